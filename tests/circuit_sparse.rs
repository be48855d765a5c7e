//! The faithfulness curve's sparse patched runs (each point as its
//! difference from the unpatched or the all-patched run) equal the dense
//! weights' patched runs point by point (edges, and position-aware
//! (edge, position) units), on gpt2-tiny, a parallel-block
//! variant of it and llama-tiny (grouped-query attention).

mod circuit_support;

use candle_core::{DType, Device};

use circuit_support::{model, pair};
use patchbench::circuits::circuit::{faithfulness_curve, log_grid};
use patchbench::circuits::graph::{Graph, ReceiverId, SenderId};
use patchbench::circuits::patched::patched_runs_at;
use patchbench::circuits::runs::{self, CircuitSpecRuns};
use patchbench::circuits::sparse::{sparse_runs_on, SparseRow};
use patchbench::circuits::{patched, CircuitOptions};
use patchbench::model::random::{preset_config, random_weights};
use patchbench::model::Transformer;
use patchbench::patching::{Corruption, Direction};

/// Every edge in a fixed scrambled order (a stand-in for a ranking).
fn scrambled(g: &Graph) -> Vec<(SenderId, ReceiverId)> {
    let mut e: Vec<_> = g.edges().into_iter().enumerate().collect();
    e.sort_by_key(|(i, _)| (*i as u64).wrapping_mul(2_654_435_761) % 4_294_967_291);
    e.into_iter().map(|(_, x)| x).collect()
}

/// Dense weights: `patched`'s edges 1.
fn dense(g: &Graph, patched: &[(SenderId, ReceiverId)]) -> Vec<f32> {
    let mut w = vec![0f32; g.n_senders() * g.n_receivers()];
    for &(s, r) in patched {
        w[g.idx(s, r)] = 1.0;
    }
    w
}

fn check(name: &str, m: &Transformer) {
    let g = Graph::new(&m.cfg);
    let spec = CircuitSpecRuns {
        direction: Direction::Noise,
        corruption: Corruption::Prompt,
    };
    let runs = runs::build(m, &g, &[pair()], &spec).unwrap();
    let run = &runs.runs[0];
    let ranked = scrambled(&g);
    let ks = log_grid(ranked.len(), 6);
    // Complete rankings use both bases; a partial one (edges it lacks are
    // never patched) only the unpatched one.
    let partial = &ranked[..ranked.len() * 2 / 3];
    for (ranked, complete) in [(&ranked[..], true), (partial, false)] {
        let rows: Vec<SparseRow> = ks
            .iter()
            .map(|&k| SparseRow::circuit((ranked, None), k, complete))
            .collect();
        if complete {
            assert!(rows.iter().any(|r| r.all_patched), "{name}");
            assert!(rows.iter().any(|r| !r.all_patched), "{name}");
        }
        let weights: Vec<Vec<f32>> = ks
            .iter()
            .map(|&k| dense(&g, &ranked[k.min(ranked.len())..]))
            .collect();
        let slow = patched::patched_runs(m, &g, run, &weights).unwrap();
        // Plain memory (the CPU's path) and tensors (other devices').
        for host in [true, false] {
            let fast = sparse_runs_on(m, &g, run, &rows, host).unwrap();
            for ((a, b), k) in fast.iter().zip(&slow).zip(&ks) {
                for metric in ["logit_diff", "logprob", "kl", "prob"] {
                    let (x, y) = (a.get(metric).unwrap(), b.get(metric).unwrap());
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{name} k = {k} {metric} (host {host}): sparse {x} vs dense {y}"
                    );
                }
            }
        }
        // The points differ from each other (the test is not vacuous).
        let ld: Vec<f32> = slow.iter().map(|x| x.logit_diff()).collect();
        let spread =
            ld.iter().fold(f32::MIN, |a, &x| a.max(x)) - ld.iter().fold(f32::MAX, |a, &x| a.min(x));
        assert!(spread > 1e-3, "{name}: the curve is flat {ld:?}");
    }
    // Position-aware units (edge, position), every one ranked.
    let t = pair().n_pos();
    let units: Vec<((SenderId, ReceiverId), usize)> = scrambled(&g)
        .into_iter()
        .enumerate()
        .flat_map(|(i, e)| (0..t).map(move |p| (e, (p + i) % t)))
        .collect();
    let (edges, at): (Vec<_>, Vec<_>) = units.iter().copied().unzip();
    let ks = log_grid(units.len(), 5);
    let rows: Vec<SparseRow> = ks
        .iter()
        .map(|&k| SparseRow::circuit((&edges, Some(&at)), k, true))
        .collect();
    let weights: Vec<Vec<f32>> = ks
        .iter()
        .map(|&k| {
            let mut w = vec![0f32; g.n_senders() * g.n_receivers() * t];
            for &((s, r), p) in &units[k..] {
                w[g.idx(s, r) * t + p] = 1.0;
            }
            w
        })
        .collect();
    let slow = patched_runs_at(m, &g, run, &weights, Some(t)).unwrap();
    for host in [true, false] {
        let fast = sparse_runs_on(m, &g, run, &rows, host).unwrap();
        for ((a, b), k) in fast.iter().zip(&slow).zip(&ks) {
            let (x, y) = (a.logit_diff(), b.logit_diff());
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{name} positions k = {k} (host {host}): sparse {x} vs dense {y}"
            );
        }
    }
    // The public curve goes through the sparse rows: its ends are the
    // dense all-patched and unpatched runs.
    let opts = CircuitOptions::default();
    let curve = faithfulness_curve(m, &g, &[pair()], &opts, &ranked, &ks).unwrap();
    let ends = [dense(&g, &ranked), dense(&g, &[])];
    let slow = patched::patched_runs(m, &g, run, &ends).unwrap();
    for (p, d) in [(&curve[0], &slow[0]), (curve.last().unwrap(), &slow[1])] {
        let (x, y) = (p.metrics.logit_diff(), d.logit_diff());
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{name}: {x} vs {y}"
        );
    }
}

#[test]
fn sparse_curve_rows_equal_dense_weights_gpt2() {
    check("gpt2-tiny", &model("gpt2-tiny"));
}

#[test]
fn sparse_curve_rows_equal_dense_weights_parallel_blocks() {
    let mut cfg = preset_config("gpt2-tiny").unwrap();
    cfg.parallel_attn_mlp = true;
    let w = random_weights(&cfg, 7, &Device::Cpu, DType::F32).unwrap();
    check("gpt2-tiny parallel", &Transformer::new(cfg, w).unwrap());
}

#[test]
fn sparse_curve_rows_equal_dense_weights_llama_gqa() {
    check("llama-tiny", &model("llama-tiny"));
}
