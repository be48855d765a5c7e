//! `patchbench bench dataset`: an N-pair sweep in shared batches against N
//! separate single-pair sweeps, per target, with the largest difference
//! between their per-pair values; `--dump` writes the token ids for
//! `tools/tl_dataset_bench.py`, which times TransformerLens's batched
//! `get_act_patch_*` on the same pairs and the same model shape.

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
    #[command(flatten)]
    pub bos: BosArgs,
    /// Write the pairs' token ids as JSON (for tools/tl_dataset_bench.py).
    #[arg(long)]
    pub dump: Option<PathBuf>,
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
    let opts = EngineOptions {
        max_batch_mem: args.max_batch_mem << 20,
        ..Default::default()
    };
    println!(
        "{:<12} {:>12} {:>10} {:>14} {:>10} {:>9} {:>12}",
        "target", "shared (s)", "forwards", "separate (s)", "forwards", "speedup", "max |diff|"
    );
    for &target in &args.targets {
        let spec = SweepSpec::new(target);
        let labels = d.labels.as_ref();
        // Warm-up: first-touch allocations are not the engine's cost.
        run_sweep_labeled(&m.model, &pairs[..1], None, &spec, &opts, None, &mut |_| {})?;
        let t = Instant::now();
        let shared = run_sweep_labeled(&m.model, pairs, labels, &spec, &opts, None, &mut |_| {})?;
        let shared_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut passes = 0;
        let mut diff = 0f32;
        for (i, p) in pairs.iter().enumerate() {
            let one = labels.map(|l| patchbench::patching::PositionLabels {
                names: l.names.clone(),
                spans: vec![l.spans[i].clone()],
            });
            let r = run_sweep_labeled(
                &m.model,
                std::slice::from_ref(p),
                one.as_ref(),
                &spec,
                &opts,
                None,
                &mut |_| {},
            )?;
            passes += r.timing.forward_passes;
            for (a, b) in r.metrics["logit_diff"]
                .iter()
                .zip(&shared.per_pair[i]["logit_diff"])
            {
                if a.is_finite() && b.is_finite() {
                    diff = diff.max((a - b).abs());
                }
            }
        }
        let separate_s = t.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>12.3} {:>10} {:>14.3} {:>10} {:>8.1}x {:>12.2e}",
            target.name(),
            shared_s,
            shared.timing.forward_passes,
            separate_s,
            passes,
            separate_s / shared_s,
            diff
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS {rss:.0} MiB");
    }
    Ok(())
}
