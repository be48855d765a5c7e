//! `patchbench bench circuit`: how long each circuit method takes on one
//! pair, the peak memory, and how far EAP and AtP* are from exact
//! patching on EAP's top edges.
//!
//! `--weights-as-vars` makes every projection weight a gradient variable,
//! which reproduces what the backward pass cost before gradients were
//! restricted to activations (candle's matmul backward then computes each
//! weight's gradient): run the command with and without it, in separate
//! processes, to compare peak memory and time.

use std::time::Instant;

use anyhow::Result;
use candle_core::Var;
use clap::Args;

use patchbench::circuits::graph::Graph;
use patchbench::circuits::runs::{self, CircuitSpecRuns};
use patchbench::circuits::{atp, eap, exact, CircuitOptions};
use patchbench::model::forward::Linear;
use patchbench::model::linear::Matrix;
use patchbench::model::Transformer;
use patchbench::patching::metrics::LOGIT_DIFF;
use patchbench::patching::runs::RunPair;
use patchbench::patching::{prepare_pairs, Corruption, Direction};

use super::bench::peak_rss_mib;
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchCircuitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub pair: super::bench::BenchPairArgs,
    /// Top EAP edges patched exactly.
    #[arg(long, default_value_t = 100)]
    pub check_exact: usize,
    /// Make projection weights gradient variables (the old backward's cost).
    #[arg(long)]
    pub weights_as_vars: bool,
    /// Only time EAP (one backward), for the memory comparison.
    #[arg(long)]
    pub eap_only: bool,
    /// Only time EAP (for the ranking) and the faithfulness curve.
    #[arg(long)]
    pub curve_only: bool,
    /// Skip AtP* (the slowest method: GradDrop's gradient groups and the
    /// QK fix's attention reruns per sender).
    #[arg(long)]
    pub no_atp: bool,
}

fn tracked(l: &mut Linear) -> Result<()> {
    if let Matrix::Dense(w) = &l.w {
        l.w = Matrix::Dense(Var::from_tensor(w)?.as_tensor().clone());
    }
    Ok(())
}

/// Every projection weight (and the unembedding) as a gradient variable.
fn track_weights(model: &mut Transformer) -> Result<()> {
    for b in model.blocks.iter_mut() {
        for l in [&mut b.attn.q, &mut b.attn.k, &mut b.attn.v, &mut b.attn.o] {
            tracked(l)?;
        }
        for l in [&mut b.mlp.w_in, &mut b.mlp.w_out] {
            tracked(l)?;
        }
        if let Some(g) = b.mlp.w_gate.as_mut() {
            tracked(g)?;
        }
    }
    model.w_u = Var::from_tensor(&model.w_u)?.as_tensor().clone();
    Ok(())
}

/// Wall-clock seconds since `t`.
fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// CPU seconds (user + system, every thread) this process has used: with
/// other work on the machine, wall-clock times stretch and this does not
/// (much; waiting threads spin).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name: utime and stime are
    // the 12th and 13th (14th and 15th of the line).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) if hz > 0.0 => (u + s) / hz,
        _ => f64::NAN,
    }
}

/// `wall s (cpu s)` since `t` and `cpu0`.
fn took(t: Instant, cpu0: f64) -> String {
    format!("{:.3} s (cpu {:.2} s)", secs(t), cpu_secs() - cpu0)
}

pub fn bench_circuit(args: &BenchCircuitArgs) -> Result<()> {
    let t = Instant::now();
    let mut m = args.model.load()?;
    println!("load: {:.2} s", secs(t));
    if args.weights_as_vars {
        track_weights(&mut m.model)?;
    }
    let pairs = prepare_pairs(&m.tokenizer, &[args.pair.pair()], None)?;
    println!(
        "{} threads; load average {}",
        candle_core::utils::get_num_threads(),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    );
    let model = &m.model;
    let g = Graph::new(&model.cfg);
    let edges = g.edges();
    println!(
        "{} tokens, {} senders, {} receivers, {} edges",
        pairs[0].n_pos(),
        g.n_senders(),
        g.n_receivers(),
        edges.len()
    );
    let rss = || {
        peak_rss_mib()
            .map(|v| format!("{v:.0} MiB"))
            .unwrap_or("?".into())
    };
    println!("peak RSS after load: {}", rss());
    let spec = CircuitSpecRuns {
        direction: Direction::Denoise,
        corruption: Corruption::Prompt,
    };
    let (t, c) = (Instant::now(), cpu_secs());
    let built = runs::build(model, &g, &pairs, &spec)?;
    let run = &built.runs[0];
    println!("unpatched runs: {}; peak RSS {}", took(t, c), rss());
    let (t, c) = (Instant::now(), cpu_secs());
    let e1 = eap::eap_ig(model, &g, run, 1)?;
    println!(
        "EAP, all edges, every differentiable metric: {}; peak RSS {}",
        took(t, c),
        rss()
    );
    if args.eap_only {
        return Ok(());
    }
    let ld = &e1[LOGIT_DIFF.0];
    let mut order: Vec<usize> = (0..edges.len()).collect();
    let score = |i: usize| ld[g.idx(edges[i].0, edges[i].1)];
    order.sort_by(|&a, &b| score(b).abs().total_cmp(&score(a).abs()));
    if !args.curve_only {
        estimators(args, model, &g, run, (&order, ld))?;
    }
    let opts = CircuitOptions::default();
    let ranked: Vec<_> = order.iter().map(|&i| edges[i]).collect();
    // Ten values of k (issue 13's curve): 0, then nine from 1 to every
    // edge, evenly spaced in log scale.
    let ks = patchbench::circuits::circuit::log_grid(edges.len(), 9);
    let (t, c) = (Instant::now(), cpu_secs());
    let curve =
        patchbench::circuits::circuit::faithfulness_curve(model, &g, &pairs, &opts, &ranked, &ks)?;
    println!(
        "faithfulness curve, {} values of k: {}; peak RSS {}",
        curve.len(),
        took(t, c),
        rss()
    );
    for p in &curve {
        println!("  k = {:>6}: {:.4}", p.k, p.recovered);
    }
    Ok(())
}

/// EAP-IG and AtP* timed, EAP's top edges patched exactly, and the gaps
/// of EAP and AtP* (plain and with the QK fix) to exact on them.
fn estimators(
    args: &BenchCircuitArgs,
    model: &Transformer,
    g: &Graph,
    run: &RunPair,
    (order, eap_ld): (&[usize], &[f32]),
) -> Result<()> {
    let rss = || {
        peak_rss_mib()
            .map(|v| format!("{v:.0} MiB"))
            .unwrap_or("?".into())
    };
    let (t, c) = (Instant::now(), cpu_secs());
    let _ = eap::eap_ig(model, g, run, 5)?;
    println!("EAP-IG m = 5: {}; peak RSS {}", took(t, c), rss());
    let atp = if args.no_atp {
        None
    } else {
        let (t, c) = (Instant::now(), cpu_secs());
        let atp = atp::atp_star(model, g, run, true, 32)?;
        println!(
            "AtP* (QK fix, GradDrop), all edges: {}; peak RSS {}",
            took(t, c),
            rss()
        );
        Some(atp)
    };
    let edges = g.edges();
    let at = |i: usize| g.idx(edges[i].0, edges[i].1);
    let top: Vec<_> = order
        .iter()
        .take(args.check_exact)
        .map(|&i| edges[i])
        .collect();
    let (t, c) = (Instant::now(), cpu_secs());
    let ex = exact::exact_edges(model, g, run, &top, 32)?;
    println!(
        "exact, top {} edges: {}; peak RSS {}",
        top.len(),
        took(t, c),
        rss()
    );
    let base = run.base_metrics.logit_diff();
    let exact: Vec<f32> = ex.iter().map(|m| m.logit_diff() - base).collect();
    let gaps = |name: &str, est: &[f32]| {
        let (mut max_gap, mut sum_gap, mut sum_abs) = (0f32, 0f32, 0f32);
        for (x, &i) in exact.iter().zip(order) {
            let gap = (est[at(i)] - x).abs();
            max_gap = max_gap.max(gap);
            sum_gap += gap;
            sum_abs += x.abs();
        }
        let n = exact.len().max(1) as f32;
        println!(
            "{name} vs exact on those edges (logit_diff): mean |gap| {:.4}, max |gap| {:.4}, mean |exact| {:.4}",
            sum_gap / n,
            max_gap,
            sum_abs / n
        );
    };
    gaps("EAP", eap_ld);
    if let Some(atp) = atp {
        gaps("AtP* (QK fix)", &atp.fixed[LOGIT_DIFF.0]);
    }
    Ok(())
}
