//! `patchbench bench`: forward-pass and sweep benchmarks.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::{Args, Subcommand};

use patchbench::analysis::estimate::{estimate, measure, measure_forward};
use patchbench::model::device::device_name;
use patchbench::model::{ForwardOptions, HookSpec};
use patchbench::patching::{
    prepare_pairs, run_sweep, Corruption, EngineOptions, PromptPair, SweepSpec, Target,
};
use patchbench::util::mem::check_elements;

use super::ModelArgs;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Time one full forward pass (logits at every position).
    Forward(BenchForwardArgs),
    /// Run one sweep with the fast and the naive method and compare.
    Sweep(BenchSweepArgs),
    /// Circuit methods on one pair: times, peak memory, EAP against exact.
    Circuit(super::bench_circuit::BenchCircuitArgs),
    /// The time estimate shown before a sweep against the measured time,
    /// for one target of each family.
    Estimate(BenchEstimateArgs),
    /// Load time and peak resident memory of one --weights mode.
    Load(super::bench_load::BenchLoadArgs),
    /// A dataset sweep in shared batches against one sweep per pair
    /// (`tools/tl_dataset_bench.py` times TransformerLens on the same pairs).
    Dataset(super::bench_dataset::BenchDatasetArgs),
}

/// The one prompt pair a benchmark measures (all four parts required).
#[derive(Args, Debug)]
pub struct BenchPairArgs {
    #[arg(long)]
    pub clean: String,
    #[arg(long)]
    pub corrupted: String,
    #[arg(long)]
    pub answer: String,
    #[arg(long)]
    pub wrong: String,
}

impl BenchPairArgs {
    pub fn pair(&self) -> PromptPair {
        PromptPair {
            clean: self.clean.clone(),
            corrupted: Some(self.corrupted.clone()),
            answer: self.answer.clone(),
            wrong: self.wrong.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchEstimateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub pair: BenchPairArgs,
    #[command(flatten)]
    pub bos: super::BosArgs,
    /// Targets to time (default: one of each family).
    #[arg(long, value_delimiter = ',', value_parser = parse_target)]
    pub targets: Vec<Target>,
    /// Gaussian noise samples of the ROME traces.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}

#[derive(Args, Debug)]
pub struct BenchSweepArgs {
    #[command(flatten)]
    pub sweep: super::sweep::SweepArgs,
    /// Only time the fast path.
    #[arg(long)]
    pub skip_naive: bool,
    /// Fast path without row packing (dense blocks per batch).
    #[arg(long)]
    pub no_packing: bool,
    /// Upper bound on recomputed tokens per batch.
    #[arg(long, default_value_t = 512)]
    pub max_batch_tokens: usize,
    /// Only the fast exact sweep: no attribution, no naive method (for
    /// large models, where a backward pass or a naive sweep costs minutes).
    #[arg(long)]
    pub exact_only: bool,
}

#[derive(Args, Debug)]
pub struct BenchForwardArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequence length.
    #[arg(long, default_value_t = 15)]
    pub tokens: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// The most timed repetitions `bench forward` runs.
const MAX_ITERS: usize = 100_000;

pub fn bench_forward(args: &BenchForwardArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch 0: batch must be at least 1 (the number of sequences run together)");
    }
    if args.tokens == 0 {
        bail!("--tokens 0: a forward pass needs at least 1 token");
    }
    if args.iters == 0 || args.iters > MAX_ITERS {
        bail!(
            "--iters {}: timed repetitions must be between 1 and {MAX_ITERS}",
            args.iters
        );
    }
    let m = args.model.load()?;
    let cfg = m.config().clone();
    let n = args.tokens;
    if n > cfg.n_ctx {
        bail!("--tokens {n} exceeds the model's context of {}", cfg.n_ctx);
    }
    // The largest tensors of the pass: the logits at every position, and a
    // few d_mlp-wide activations per block that live at once.
    check_elements(
        "bench forward: --batch x --tokens logits",
        &[args.batch, n, cfg.d_vocab],
        4,
    )?;
    check_elements(
        "bench forward: --batch x --tokens activations",
        &[args.batch, n, cfg.d_mlp.max(cfg.d_model), 4],
        4,
    )?;
    let ids: Vec<u32> = (0..args.batch * n)
        .map(|i| ((i * 7919 + 13) % cfg.d_vocab) as u32)
        .collect();
    let tokens = Tensor::from_vec(ids, (args.batch, n), m.model.device())?;
    let spec = HookSpec::new();
    let opts = ForwardOptions::default();
    let forward = || -> Result<()> {
        let out = m.model.forward(Some(&tokens), &spec, &opts)?;
        // Force the computation to finish (matters on asynchronous devices).
        out.logits
            .context("no logits")?
            .sum_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        Ok(())
    };
    forward()?;
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        forward()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let best = times[0];
    let flops = cfg.forward_flops(n, n) * args.batch as f64;
    println!(
        "model      {} ({} layers, d_model {}, {:.1}M params)",
        m.source,
        cfg.n_layers,
        cfg.d_model,
        cfg.n_params() as f64 / 1e6
    );
    println!(
        "device     {} {:?}, {} threads",
        device_name(m.model.device()),
        m.model.dtype(),
        candle_core::utils::get_num_threads()
    );
    println!(
        "input      batch {} x {} tokens, logits at every position",
        args.batch, n
    );
    println!("load       {:.0} ms", m.load_ms);
    println!(
        "forward    median {:.2} ms, best {:.2} ms over {} runs",
        median * 1e3,
        best * 1e3,
        times.len()
    );
    println!(
        "throughput {:.1} GFLOP/s (median), {:.1} GFLOP/s (best)",
        flops / median / 1e9,
        flops / best / 1e9
    );
    Ok(())
}

/// Row-major index -> coordinates along `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for (k, &n) in shape.iter().enumerate().rev() {
        out[k] = i % n.max(1);
        i /= n.max(1);
    }
    out
}

/// Peak resident memory of this process so far, in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn bench_sweep(args: &BenchSweepArgs) -> Result<()> {
    use patchbench::patching::attribution::top_cells;
    use patchbench::patching::{run_sweep, Method, SweepResult};
    let (m, pairs) = args.sweep.prepare()?;
    let spec = args.sweep.spec();
    println!(
        "model {}  target {}  {} tokens  ({} threads)",
        m.source,
        spec.target,
        pairs[0].n_pos(),
        candle_core::utils::get_num_threads()
    );
    println!(
        "load  {:.0} ms, weights {}{}",
        m.load_ms,
        args.sweep.model.weights,
        if m.model.is_quantized() {
            " (matrices quantized)"
        } else {
            ""
        }
    );
    if let Some((rss, peak)) = super::bench_load::rss_mib() {
        println!("rss   {rss:.0} MiB after load (peak {peak:.0} MiB)");
    }
    let mut methods = vec![Method::Fast];
    // Attribution takes gradients, which quantized weights do not carry.
    if !args.exact_only && !m.model.is_quantized() {
        methods.push(Method::Attribution);
    }
    if !args.skip_naive && !args.exact_only {
        methods.push(Method::Naive);
    }
    let mut runs: Vec<(Method, f64, SweepResult)> = Vec::new();
    let mut fast_peak = None;
    for method in methods {
        let mut opts = args.sweep.engine(method);
        opts.packed = !args.no_packing;
        opts.max_batch_tokens = args.max_batch_tokens;
        let t = Instant::now();
        let r = run_sweep(&m.model, &pairs, &spec, &opts, None, &mut |_| {})?;
        runs.push((method, t.elapsed().as_secs_f64(), r));
        if method == Method::Fast {
            fast_peak = peak_rss_mib();
        }
    }
    println!(
        "{:<12} {:>14} {:>10}",
        "method", "forward passes", "wall (s)"
    );
    for (method, wall, r) in &runs {
        let name = format!("{method:?}").to_lowercase();
        println!("{name:<12} {:>14} {wall:>10.3}", r.timing.forward_passes);
    }
    let (fast_wall, fast) = (runs[0].1, &runs[0].2);
    let max_diff = |a: &SweepResult, b: &SweepResult| {
        a.metrics["logit_diff"]
            .iter()
            .zip(&b.metrics["logit_diff"])
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    if let Some((_, naive_wall, naive)) = runs.iter().find(|r| r.0 == Method::Naive) {
        println!("speedup {:.1}x over naive", naive_wall / fast_wall);
        println!(
            "max |fast - naive| logit_diff {:.2e}",
            max_diff(fast, naive)
        );
    }
    let argmax = fast.metrics["logit_diff_normalized"]
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, v)| (i, *v));
    if let Some((i, v)) = argmax {
        let cell: Vec<String> = unravel(i, &fast.shape)
            .iter()
            .zip(&fast.axes)
            .map(|(x, a)| format!("{a} {x}"))
            .collect();
        println!(
            "argmax cell {} (logit_diff_normalized {v:.3}); baselines clean {:.3}, corrupted {:.3}",
            cell.join(", "),
            fast.baselines.clean.logit_diff(),
            fast.baselines.corrupted.logit_diff()
        );
    }
    let Some((_, _, attr)) = runs.iter().find(|r| r.0 == Method::Attribution) else {
        if let Some(peak) = fast_peak {
            println!("peak RSS {peak:.0} MiB after load + fast sweep");
        }
        return Ok(());
    };
    let base = match spec.direction {
        patchbench::patching::Direction::Denoise => fast.baselines.corrupted.logit_diff(),
        patchbench::patching::Direction::Noise => fast.baselines.clean.logit_diff(),
    };
    let top = top_cells(attr, base, 10);
    let err = top
        .iter()
        .map(|&c| (attr.metrics["logit_diff"][c] - fast.metrics["logit_diff"][c]).abs())
        .fold(0f32, f32::max);
    let biggest = fast.metrics["logit_diff"]
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| (x - base).abs())
        .fold(0f32, f32::max);
    println!(
        "attribution: top-{} cells differ from exact patching by at most {err:.3} (largest exact effect {biggest:.3})",
        top.len()
    );
    if let (Some(fast), Some(all)) = (fast_peak, peak_rss_mib()) {
        println!("peak RSS {fast:.0} MiB after load + fast sweep, {all:.0} MiB after all methods");
    }
    Ok(())
}

/// The targets `bench estimate` times by default: one per family of cell
/// layout and batching (packed layer × position, dense heads, per-position
/// heads, attention patterns, the composite sweeps, ROME traces).
const ESTIMATE_TARGETS: &[Target] = &[
    Target::ResidPre,
    Target::AttnOut,
    Target::HeadOut,
    Target::HeadOutByPos,
    Target::HeadPattern,
    Target::BlockEvery,
    Target::HeadsEvery,
    Target::TraceHidden,
    Target::TraceMlp,
];

pub fn bench_estimate(args: &BenchEstimateArgs) -> Result<()> {
    let m = args.model.load()?;
    let pairs = prepare_pairs(&m.tokenizer, &[args.pair.pair()], args.bos.choice())?;
    let targets = if args.targets.is_empty() {
        ESTIMATE_TARGETS.to_vec()
    } else {
        args.targets.clone()
    };
    println!(
        "model {}  {} tokens  ({} threads)",
        m.source,
        pairs[0].n_pos(),
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<16} {:<9} {:>6} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "target", "corrupt", "cells", "est (s)", "old (s)", "took (s)", "took/est", "took/old"
    );
    let opts = EngineOptions::default();
    let timing = measure_forward(&m.model, &pairs[0].clean)?;
    for target in targets {
        let mut spec = SweepSpec::new(target);
        if matches!(
            target,
            Target::TraceHidden | Target::TraceMlp | Target::TraceAttn
        ) {
            spec.corruption = Corruption::Gaussian {
                positions: vec![],
                scale: None,
                samples: args.samples,
                seed: 0,
            };
        }
        if spec.check_model(m.config()).is_err() {
            continue;
        }
        let est = measure(&m.model, &pairs, &spec, &opts)?;
        let old = estimate(m.config(), &pairs, &spec, &timing, &opts);
        let start = Instant::now();
        run_sweep(&m.model, &pairs, &spec, &opts, None, &mut |_| {})?;
        let took = start.elapsed().as_secs_f64();
        println!(
            "{:<16} {:<9} {:>6} {:>10.3} {:>10.3} {:>10.3} {:>8.2} {:>8.2}",
            target.name(),
            spec.corruption.name(),
            est.cells,
            est.seconds,
            old.seconds,
            took,
            took / est.seconds,
            took / old.seconds
        );
    }
    Ok(())
}
