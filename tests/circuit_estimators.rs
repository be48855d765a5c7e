//! AtP* and EAP-IG on activations against what they must reduce to: the
//! plain AtP estimate is EAP's; the QK fix touches only query/key edges
//! and, for a tiny step, agrees with the linear estimate and exact
//! patching; GradDrop's magnitudes follow from which layers a receiver's
//! gradient passes through; EAP-IG on activations with one step is EAP
//! and converges as its steps grow. On the gpt2-tiny and llama-tiny
//! (grouped-query) presets.

mod circuit_support;

use circuit_support::{max_abs_diff, model, pair, prompt_runs};
use patchbench::circuits::atp::atp_star;
use patchbench::circuits::eap::grad_metrics;
use patchbench::circuits::eap::{eap_ig, eap_ig_on, IgOn};
use patchbench::circuits::exact;
use patchbench::circuits::graph::{Graph, Qkv, Receiver};
use patchbench::circuits::runs::{self, CircuitSpecRuns};
use patchbench::patching::metrics::{LOGIT_DIFF, REGISTRY};
use patchbench::patching::{Corruption, Direction};

fn is_qk(g: &Graph, r: usize) -> bool {
    matches!(
        g.receivers[r],
        Receiver::Head {
            port: Qkv::Q | Qkv::K,
            ..
        }
    )
}

fn check_atp_star(preset: &str) {
    let m = model(preset);
    let g = Graph::new(&m.cfg);
    let runs = prompt_runs(&m, &g);
    let run = &runs.runs[0];
    // A pass budget of 7 rows: the gradient batch goes through in chunks
    // of 3, across GradDrop's groups (the estimates must not notice).
    let a = atp_star(&m, &g, run, true, 7).unwrap();
    let eap = eap_ig(&m, &g, run, 1).unwrap();
    let (nl, nr) = (g.n_layers, g.n_receivers());
    let gd = a.graddrop.as_ref().unwrap();
    // Every differentiable metric has its own rows (GradDrop's groups ×
    // metrics): each must reduce as logit_diff does.
    for k in grad_metrics() {
        let name = REGISTRY[k].name;
        let top = eap[k]
            .iter()
            .filter(|x| x.is_finite())
            .fold(0f32, |t, x| t.max(x.abs()));
        let d = max_abs_diff(&a.plain[k], &eap[k]);
        assert!(
            d <= 1e-5 * (1.0 + top),
            "{preset} {name}: plain AtP differs from EAP by {d}"
        );
        let (mut fixed_moved, mut checked) = (0, 0);
        for (s, r) in g.edges() {
            let i = g.idx(s, r);
            let (p, f, gd) = (a.plain[k][i], a.fixed[k][i], gd[k][i]);
            let r = r.0 as usize;
            if is_qk(&g, r) {
                fixed_moved += usize::from((p - f).abs() > 1e-4 * (1.0 + p.abs()));
            } else {
                assert_eq!(p, f, "{preset} {name}: the QK fix moved a non-q/k edge");
            }
            // Logits read no block: every dropped layer leaves the gradient,
            // L terms of |fixed| over L - 1. A last-block receiver loses its
            // gradient only when its own block is dropped: |fixed|.
            let want = if r == nr - 1 {
                f.abs() * nl as f32 / (nl - 1) as f32
            } else if g.receiver_layer(patchbench::circuits::ReceiverId(r as u32)) == nl - 1 {
                f.abs()
            } else {
                continue;
            };
            checked += 1;
            assert!(
                (gd - want).abs() <= 1e-4 * (1.0 + want),
                "{preset} {name}: GradDrop {gd} vs {want}"
            );
        }
        assert!(
            checked > 0 && (fixed_moved > 0 || k != LOGIT_DIFF.0),
            "{preset} {name}: {checked} {fixed_moved}"
        );
    }
}

#[test]
fn atp_star_reduces_to_eap_and_graddrop_follows_the_layers_gpt2() {
    check_atp_star("gpt2-tiny");
}

#[test]
fn atp_star_reduces_to_eap_and_graddrop_follows_the_layers_llama_gqa() {
    check_atp_star("llama-tiny");
}

/// For a corrupted run a tiny step from the clean one the attention
/// softmax is locally linear: the QK-fixed estimate, the plain one and
/// exact patching agree on the query/key edges.
#[test]
fn the_qk_fix_is_exact_to_first_order() {
    let m = model("llama-tiny");
    let g = Graph::new(&m.cfg);
    let mut p = pair();
    p.corrupted = p.clean.clone();
    let spec = CircuitSpecRuns {
        direction: Direction::Noise,
        corruption: Corruption::Gaussian {
            positions: vec![1, 3],
            scale: Some(1e-3),
            samples: 1,
            seed: 4,
        },
    };
    let runs = runs::build(&m, &g, &[p], &spec).unwrap();
    let run = &runs.runs[0];
    let a = atp_star(&m, &g, run, false, 64).unwrap();
    assert!(a.graddrop.is_none());
    let edges: Vec<_> = g
        .edges()
        .into_iter()
        .filter(|&(_, r)| is_qk(&g, r.0 as usize))
        .collect();
    let ex = exact::exact_edges(&m, &g, run, &edges, 64).unwrap();
    let base = run.base_metrics.logit_diff();
    let ld = LOGIT_DIFF.0;
    let (mut err_fixed, mut top) = (0f32, 0f32);
    for (&(s, r), x) in edges.iter().zip(&ex) {
        let x = x.logit_diff() - base;
        top = top.max(x.abs());
        err_fixed = err_fixed.max((a.fixed[ld][g.idx(s, r)] - x).abs());
    }
    assert!(top > 0.0);
    assert!(
        err_fixed <= 0.05 * top,
        "QK-fixed estimate off by {err_fixed} of {top}"
    );
}

#[test]
fn eap_ig_on_activations_starts_at_eap_and_converges() {
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let m = model(preset);
        let g = Graph::new(&m.cfg);
        let runs = prompt_runs(&m, &g);
        let run = &runs.runs[0];
        let ld = LOGIT_DIFF.0;
        let at = |steps| eap_ig_on(&m, &g, run, steps, IgOn::Activations).unwrap()[ld].clone();
        let one = at(1);
        let eap = eap_ig(&m, &g, run, 1).unwrap();
        let d = max_abs_diff(&one, &eap[ld]);
        assert!(d < 1e-4, "{preset}: m = 1 differs from EAP by {d}");
        let fine = at(16);
        let dist = |a: &[f32]| {
            a.iter()
                .zip(&fine)
                .filter(|(x, _)| x.is_finite())
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        let d: Vec<f32> = [&one, &at(2), &at(4)].iter().map(|a| dist(a)).collect();
        assert!(d[1] < d[0] && d[2] < d[1], "{preset}: {d:?}");
        // Not the input interpolation under another name.
        let inputs = eap_ig(&m, &g, run, 4).unwrap();
        assert!(max_abs_diff(&inputs[ld], &at(4)) > 1e-4, "{preset}");
    }
}
