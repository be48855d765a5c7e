//! `patchbench bench dataset`: an N-pair sweep in shared batches against N
//! separate single-pair sweeps, per target, with the largest difference
//! between their per-pair values; `--dump` writes the token ids for
//! `tools/tl_dataset_bench.py`, which times TransformerLens's batched
//! `get_act_patch_*` on the same pairs and the same model shape.
//!
//! Each side is timed in wall seconds and in CPU seconds of the process
//! (user + system, all threads): on a shared machine the wall time follows
//! the load, the CPU time much less, so both are reported (`--json` keeps
//! them with the load average and the options, for the committed results
//! under `tools/bench-results/`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::patching::{run_sweep_labeled, EngineOptions, SweepSpec, Target};

use super::bench::peak_rss_mib;
use super::dataset::{load_for, prepare_dataset};
use super::{BosArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct BenchDatasetArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The pairs (default: IOI pairs generated for the model).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Generated pairs.
    #[arg(long, default_value_t = 32)]
    pub n: usize,
    /// Token length of generated pairs.
    #[arg(long, default_value_t = 15)]
    pub tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_delimiter = ',', default_value = "head_out,resid_pre", value_parser = parse_target)]
    pub targets: Vec<Target>,
    /// Memory budget for one batch, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub max_batch_mem: usize,
    /// Upper bound on recomputed tokens per batch (the engine's default
    /// when absent).
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    #[command(flatten)]
    pub bos: BosArgs,
    /// Time only the shared batches (no separate single-pair sweeps).
    #[arg(long)]
    pub shared_only: bool,
    /// Write the pairs' token ids as JSON (for tools/tl_dataset_bench.py).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Write the measurements as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// CPU seconds (user + system, every thread) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// The 1-minute load average (Linux), to say how busy the machine was.
fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Wall and CPU seconds since `start` (`(Instant, cpu_seconds())`).
fn elapsed(start: &(Instant, f64)) -> (f64, f64) {
    (start.0.elapsed().as_secs_f64(), cpu_seconds() - start.1)
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}

pub fn bench_dataset(args: &BenchDatasetArgs) -> Result<()> {
    let m = args.model.load()?;
    let bos = args.bos.choice();
    let d = match &args.dataset {
        Some(p) => load_for(p, &m, bos)?,
        None => {
            let style = if args.model.model == "demo" {
                Style::Demo
            } else {
                Style::English
            };
            let g = generate(
                &m.tokenizer,
                &GenOptions {
                    task: Task::Ioi,
                    style,
                    n: args.n,
                    seed: args.seed,
                    prepend_bos: bos,
                    tokens: Some(args.tokens),
                },
            )
            .context("generating the benchmark's IOI pairs")?;
            prepare_dataset(g.dataset, &m, bos)?
        }
    };
    let pairs = &d.pairs;
    if let Some(path) = &args.dump {
        let ids = |f: fn(&patchbench::patching::PreparedPair) -> Vec<u32>| -> Vec<Vec<u32>> {
            pairs.iter().map(f).collect()
        };
        let v = json!({
            "model": m.source,
            "clean": ids(|p| p.clean.clone()),
            "corrupted": ids(|p| p.corrupted.clone()),
            "answer": pairs.iter().map(|p| p.answer).collect::<Vec<_>>(),
            "wrong": pairs.iter().map(|p| p.wrong).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "model {}  {} pairs of {} tokens  ({} threads, --max-batch-mem {} MiB)",
        m.source,
        pairs.len(),
        pairs[0].n_pos(),
        candle_core::utils::get_num_threads(),
        args.max_batch_mem
    );
    let mut opts = EngineOptions {
        max_batch_mem: args.max_batch_mem << 20,
        ..Default::default()
    };
    if let Some(t) = args.max_batch_tokens {
        opts.max_batch_tokens = t.max(1);
    }
    println!(
        "{:<10} {:>18} {:>8} {:>18} {:>8} {:>14} {:>10}",
        "target",
        "shared s (CPU)",
        "passes",
        "separate s (CPU)",
        "passes",
        "speedup (CPU)",
        "max |diff|"
    );
    let mut rows = Vec::new();
    for &target in &args.targets {
        let spec = SweepSpec::new(target);
        let labels = d.labels.as_ref();
        // Warm-up: first-touch allocations are not the engine's cost.
        run_sweep_labeled(&m.model, &pairs[..1], None, &spec, &opts, None, &mut |_| {})?;
        let load_before = load_average();
        let t = (Instant::now(), cpu_seconds());
        let shared = run_sweep_labeled(&m.model, pairs, labels, &spec, &opts, None, &mut |_| {})?;
        let (shared_s, shared_cpu) = elapsed(&t);
        let sep = match args.shared_only {
            true => None,
            false => Some(separate_sweeps(
                &m.model, pairs, labels, &spec, &opts, &shared,
            )?),
        };
        let line = match &sep {
            Some(x) => format!(
                "{:>9.2} ({:>6.1}) {:>8} {:>5.2}x ({:.2}x) {:>10.2e}",
                x.wall_s,
                x.cpu_s,
                x.passes,
                x.wall_s / shared_s,
                x.cpu_s / shared_cpu,
                x.max_diff
            ),
            None => format!("{:>18} {:>8} {:>14} {:>10}", "-", "-", "-", "-"),
        };
        println!(
            "{:<10} {:>9.2} ({:>6.1}) {:>8} {line}",
            target.name(),
            shared_s,
            shared_cpu,
            shared.timing.forward_passes,
        );
        rows.push(json!({
            "target": target.name(),
            "shared": {"wall_s": shared_s, "cpu_s": shared_cpu,
                       "forward_passes": shared.timing.forward_passes},
            "separate": sep.as_ref().map(|x| json!({"wall_s": x.wall_s, "cpu_s": x.cpu_s,
                                                   "forward_passes": x.passes})),
            "speedup_wall": sep.as_ref().map(|x| x.wall_s / shared_s),
            "speedup_cpu": sep.as_ref().map(|x| x.cpu_s / shared_cpu),
            "max_abs_diff": sep.as_ref().map(|x| x.max_diff),
            "load_before": load_before,
            "load_after": load_average(),
        }));
    }
    let rss = peak_rss_mib();
    if let Some(rss) = rss {
        println!("peak RSS {rss:.0} MiB");
    }
    if let Some(path) = &args.json {
        let v = json!({
            "model": m.source,
            "pairs": pairs.len(),
            "tokens": pairs[0].n_pos(),
            "threads": candle_core::utils::get_num_threads(),
            "max_batch_mem_mib": args.max_batch_mem,
            "max_batch_tokens": opts.max_batch_tokens,
            "version": env!("CARGO_PKG_VERSION"),
            "targets": rows,
            "peak_rss_mib": rss,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The separate single-pair sweeps: their time, passes, and the largest
/// difference of their `logit_diff` from the shared sweep's per-pair values.
struct Separate {
    wall_s: f64,
    cpu_s: f64,
    passes: usize,
    max_diff: f32,
}

fn separate_sweeps(
    model: &patchbench::model::Transformer,
    pairs: &[patchbench::patching::PreparedPair],
    labels: Option<&patchbench::patching::PositionLabels>,
    spec: &SweepSpec,
    opts: &EngineOptions,
    shared: &patchbench::patching::SweepResult,
) -> Result<Separate> {
    let t = (Instant::now(), cpu_seconds());
    let mut passes = 0;
    let mut max_diff = 0f32;
    for (i, p) in pairs.iter().enumerate() {
        let one = labels.map(|l| patchbench::patching::PositionLabels {
            names: l.names.clone(),
            spans: vec![l.spans[i].clone()],
        });
        let r = run_sweep_labeled(
            model,
            std::slice::from_ref(p),
            one.as_ref(),
            spec,
            opts,
            None,
            &mut |_| {},
        )?;
        passes += r.timing.forward_passes;
        for (a, b) in r.metrics["logit_diff"]
            .iter()
            .zip(&shared.per_pair[i]["logit_diff"])
        {
            if a.is_finite() && b.is_finite() {
                max_diff = max_diff.max((a - b).abs());
            }
        }
    }
    let (wall_s, cpu_s) = elapsed(&t);
    Ok(Separate {
        wall_s,
        cpu_s,
        passes,
        max_diff,
    })
}
