//! Circuit searches over pairs of different token lengths: edges have no
//! position axis, so each pair runs at its own length and every method's
//! score of an edge over the dataset is the mean of its per-pair scores
//! (exact patching, path patching, EAP, AtP*), and the faithfulness curve
//! is measured over both pairs. An ablation (one source activation for
//! every pair) cannot mix lengths and is refused, naming the pairs and
//! the fix. On gpt2-tiny.

mod circuit_support;

use circuit_support::{model, pair};
use patchbench::circuits::{run_circuit, CircuitError, CircuitOptions, Method};
use patchbench::patching::metrics::LOGIT_DIFF;
use patchbench::patching::{Corruption, PreparedPair};

/// Nine tokens (the fixture pair is seven); the corruption changes the fifth.
fn longer() -> PreparedPair {
    PreparedPair {
        clean: vec![8, 3, 17, 9, 250, 4, 11, 60, 2],
        corrupted: vec![8, 3, 17, 9, 40, 4, 11, 60, 2],
        answer: 6,
        wrong: 9,
        sets: Default::default(),
    }
}

fn opts(method: Method) -> CircuitOptions {
    CircuitOptions {
        method,
        check_exact: 4,
        faithfulness_points: 3,
        ..Default::default()
    }
}

#[test]
fn every_method_averages_per_pair_scores_over_pairs_of_different_lengths() {
    let m = model("gpt2-tiny");
    let ld = LOGIT_DIFF;
    let (a, b) = (pair(), longer());
    assert_ne!(a.clean.len(), b.clean.len());
    for method in [Method::Exact, Method::Path, Method::Eap, Method::AtpStar] {
        let both = run_circuit(&m, &[a.clone(), b.clone()], &opts(method)).unwrap();
        let one = run_circuit(&m, std::slice::from_ref(&a), &opts(method)).unwrap();
        let two = run_circuit(&m, std::slice::from_ref(&b), &opts(method)).unwrap();
        let score = |r: &patchbench::circuits::CircuitResult, s: &str, t: &str| {
            r.edges
                .iter()
                .find(|e| e.sender == s && e.receiver == t)
                .map(|e| e.scores[ld])
                .unwrap()
        };
        let mut differ = 0;
        for e in &both.edges {
            let (x, y) = (
                score(&one, &e.sender, &e.receiver),
                score(&two, &e.sender, &e.receiver),
            );
            let want = (x + y) / 2.0;
            let got = e.scores[ld];
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{method:?} {} -> {}: {got} over both pairs, per pair {x} and {y}",
                e.sender,
                e.receiver
            );
            differ += usize::from((x - y).abs() > 1e-3);
        }
        // The pairs are different inputs: their graphs are not the same.
        assert!(differ > 0, "{method:?}: both pairs scored alike");
        let full = both.faithfulness.last().expect("a faithfulness curve");
        assert_eq!(full.k, both.n_edges);
        assert!(
            (full.recovered - 1.0).abs() < 1e-3,
            "{method:?}: every edge kept recovers {}",
            full.recovered
        );
    }
}

#[test]
fn an_ablation_over_pairs_of_different_lengths_is_refused_with_the_fix() {
    let m = model("gpt2-tiny");
    let mut o = opts(Method::Eap);
    o.corruption = Corruption::Mean { positions: vec![3] };
    let err = match run_circuit(&m, &[pair(), longer()], &o) {
        Err(CircuitError::Invalid(e)) => e,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a mean ablation over pairs of 7 and 9 tokens ran"),
    };
    for want in [
        "7 tokens: pair 0",
        "9 tokens: pair 1",
        "--corruption prompt",
    ] {
        assert!(err.contains(want), "{err:?} does not say {want:?}");
    }
}
