//! The fast sweep path against the naive one-forward-per-cell reference, on
//! every target, both directions and every corruption, plus the invariants
//! of patching.

mod common;

use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::spec::ALL_TARGETS;
use patchbench::patching::{
    prepare_pairs, run_sweep, Corruption, Direction, EngineOptions, Method, PromptPair,
    SweepResult, SweepSpec, Target, METRICS,
};

fn load(name: &str) -> LoadedModel {
    let opts = LoadOptions::cpu();
    LoadedModel::load(fixture(name).to_str().unwrap(), &opts).unwrap()
}

fn ioi(corrupted: &str) -> PromptPair {
    PromptPair {
        clean: "When Mary and John went to the store, John gave a drink to".into(),
        corrupted: Some(corrupted.into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

/// Differs from the clean prompt at two positions.
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";

fn sweep(m: &LoadedModel, pairs: &[PromptPair], spec: &SweepSpec, method: Method) -> SweepResult {
    let prepared = prepare_pairs(&m.tokenizer, pairs, None).unwrap();
    let opts = EngineOptions {
        method,
        // Small batches so several batches and start positions are exercised.
        max_batch_tokens: 40,
        ..Default::default()
    };
    run_sweep(&m.model, &prepared, spec, &opts, None, &mut |_| {}).unwrap()
}

fn assert_same(a: &SweepResult, b: &SweepResult, what: &str) {
    assert_eq!(a.shape, b.shape, "{what}");
    for m in METRICS {
        // The normalised logit diff divides by (clean - corrupted), which
        // amplifies float noise when the baselines are close.
        let denom = (b.baselines.clean.logit_diff() - b.baselines.corrupted.logit_diff()).abs();
        let tol = match *m {
            "rank" => 0.0,
            "logit_diff_normalized" => 1e-4 / denom.min(1.0),
            _ => 1e-4,
        };
        for (i, (x, y)) in a.metrics[*m].iter().zip(&b.metrics[*m]).enumerate() {
            let ok = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * (1.0 + y.abs());
            assert!(ok, "{what}: {m}[{i}] fast {x} vs naive {y}");
        }
    }
}

fn check_all_targets(model: &str) {
    let m = load(model);
    let pairs = [ioi(CORRUPTED)];
    for &target in ALL_TARGETS {
        for direction in [Direction::Denoise, Direction::Noise] {
            let spec = SweepSpec {
                target,
                direction,
                corruption: Corruption::Prompt,
                window: 3,
            };
            let fast = sweep(&m, &pairs, &spec, Method::Fast);
            let naive = sweep(&m, &pairs, &spec, Method::Naive);
            assert_same(&fast, &naive, &format!("{model} {target} {direction}"));
            assert!(
                fast.timing.forward_passes < naive.timing.forward_passes,
                "{model} {target}: the fast path used {} passes, naive {}",
                fast.timing.forward_passes,
                naive.timing.forward_passes
            );
        }
    }
}

#[test]
fn fast_equals_naive_on_every_target_gpt2() {
    check_all_targets("gpt2-tiny");
}

#[test]
fn fast_equals_naive_on_every_target_llama_gqa() {
    check_all_targets("llama-tiny");
}

#[test]
fn fast_equals_naive_for_noise_and_ablation_corruptions() {
    for model in ["gpt2-tiny", "llama-tiny"] {
        let m = load(model);
        let pairs = [ioi(CORRUPTED)];
        let corruptions = [
            (
                Corruption::Gaussian {
                    positions: vec![],
                    scale: None,
                    samples: 3,
                    seed: 7,
                },
                Direction::Denoise,
            ),
            (
                Corruption::Gaussian {
                    positions: vec![2, 4],
                    scale: Some(0.5),
                    samples: 2,
                    seed: 1,
                },
                Direction::Noise,
            ),
            (Corruption::Zero { positions: vec![] }, Direction::Noise),
            (
                Corruption::Mean {
                    positions: vec![1, 2],
                },
                Direction::Noise,
            ),
        ];
        for (corruption, direction) in corruptions {
            for target in [
                Target::ResidPre,
                Target::HeadOut,
                Target::TraceMlp,
                Target::HeadPatternByPos,
                Target::HeadV,
            ] {
                let spec = SweepSpec {
                    target,
                    direction,
                    corruption: corruption.clone(),
                    window: 3,
                };
                let fast = sweep(&m, &pairs, &spec, Method::Fast);
                let naive = sweep(&m, &pairs, &spec, Method::Naive);
                assert_same(
                    &fast,
                    &naive,
                    &format!("{model} {target} {}", corruption.name()),
                );
            }
        }
    }
}

#[test]
fn several_pairs_store_mean_and_per_pair_values() {
    let m = load("gpt2-tiny");
    let pairs = [
        ioi(CORRUPTED),
        ioi("When Mary and John went to the store, Mary gave a drink to"),
    ];
    let spec = SweepSpec::new(Target::ResidPre);
    let both = sweep(&m, &pairs, &spec, Method::Fast);
    assert_same(&both, &sweep(&m, &pairs, &spec, Method::Naive), "two pairs");
    let one = sweep(&m, &pairs[..1], &spec, Method::Fast);
    let two = sweep(&m, &pairs[1..], &spec, Method::Fast);
    assert_eq!(both.per_pair.len(), 2);
    for i in 0..both.n_cells() {
        let (a, b) = (one.metrics["logit_diff"][i], two.metrics["logit_diff"][i]);
        assert!((both.metrics["logit_diff"][i] - (a + b) / 2.0).abs() < 1e-5);
        // The pairs share batches, so their rows are multiplied in other
        // blocks than alone: equal to rounding, not bit for bit.
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * (1.0 + y.abs());
        assert!(close(both.per_pair[0]["logit_diff"][i], a), "cell {i}");
        assert!(close(both.per_pair[1]["logit_diff"][i], b), "cell {i}");
    }
}

#[test]
fn patching_clean_into_clean_changes_nothing() {
    for model in ["gpt2-tiny", "llama-tiny"] {
        let m = load(model);
        // No corrupted prompt: the "corrupted" run is the clean prompt
        // itself (a corrupted prompt identical to the clean one is refused
        // by `prepare_pairs`, since a user never means it).
        let same = PromptPair {
            corrupted: None,
            ..ioi("When Mary and John went to the store, John gave a drink to")
        };
        for target in [
            Target::ResidPre,
            Target::HeadOutByPos,
            Target::HeadPattern,
            Target::BlockEvery,
        ] {
            for method in [Method::Fast, Method::Naive] {
                let r = sweep(
                    &m,
                    std::slice::from_ref(&same),
                    &SweepSpec::new(target),
                    method,
                );
                let clean = r.baselines.clean.logit_diff();
                for x in &r.metrics["logit_diff"] {
                    if x.is_finite() {
                        assert!(
                            (x - clean).abs() < 1e-4,
                            "{model} {target} {method:?}: {x} vs clean {clean}"
                        );
                    }
                }
                assert!(r.metrics["kl"]
                    .iter()
                    .filter(|x| x.is_finite())
                    .all(|k| k.abs() < 1e-5));
            }
        }
    }
}

#[test]
fn resid_pre_at_layer_zero_on_the_differing_position_restores_clean() {
    for model in ["gpt2-tiny", "llama-tiny"] {
        let m = load(model);
        // One differing token: patching its layer-0 residual restores the clean run exactly.
        let pair = ioi("When Mary and John went to the store, Mary gave a drink to");
        let prepared = prepare_pairs(&m.tokenizer, std::slice::from_ref(&pair), None).unwrap();
        let diff = prepared[0].differing_positions();
        assert_eq!(
            diff.len(),
            1,
            "{model}: fixture pair should differ in one token"
        );
        let r = sweep(&m, &[pair], &SweepSpec::new(Target::ResidPre), Method::Fast);
        let n_pos = r.shape[1];
        for p in 0..n_pos {
            let x = r.metrics["logit_diff_normalized"][p];
            let want = if p == diff[0] { 1.0 } else { 0.0 };
            assert!((x - want).abs() < 1e-4, "{model} layer 0 pos {p}: {x}");
        }
        assert!(r.metrics["kl"][diff[0]].abs() < 1e-5);
    }
}

#[test]
fn noising_mirrors_denoising_the_swapped_pair() {
    let m = load("llama-tiny");
    let a = ioi(CORRUPTED);
    let b = PromptPair {
        clean: CORRUPTED.into(),
        corrupted: Some(a.clean.clone()),
        ..a.clone()
    };
    for target in [Target::ResidPre, Target::HeadOut, Target::AttnOut] {
        let noise = SweepSpec {
            direction: Direction::Noise,
            ..SweepSpec::new(target)
        };
        let denoise = SweepSpec::new(target);
        let x = sweep(&m, std::slice::from_ref(&a), &noise, Method::Fast);
        let y = sweep(&m, std::slice::from_ref(&b), &denoise, Method::Fast);
        for (i, (p, q)) in x.metrics["logit_diff"]
            .iter()
            .zip(&y.metrics["logit_diff"])
            .enumerate()
        {
            assert!(
                (p - q).abs() < 1e-4,
                "{target}[{i}]: noise {p} vs mirrored denoise {q}"
            );
        }
        assert_eq!(
            x.baselines.clean.logit_diff(),
            y.baselines.corrupted.logit_diff()
        );
    }
}

#[test]
fn cancellation_stops_between_batches() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let m = load("gpt2-tiny");
    let prepared = prepare_pairs(&m.tokenizer, &[ioi(CORRUPTED)], None).unwrap();
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let opts = EngineOptions {
        method: Method::Naive,
        ..Default::default()
    };
    let r = run_sweep(
        &m.model,
        &prepared,
        &SweepSpec::new(Target::HeadOutByPos),
        &opts,
        Some(&cancel),
        &mut |p| {
            seen = p.done;
            assert!(p.done <= p.total);
            if p.done >= 5 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
    );
    assert!(matches!(
        r,
        Err(patchbench::patching::SweepError::Cancelled)
    ));
    assert!((5..10).contains(&seen), "progress stopped at {seen}");
}

#[test]
fn mismatched_lengths_and_multi_token_answers_are_refused() {
    let m = load("gpt2-tiny");
    let bad = PromptPair {
        corrupted: Some("When Mary and Johnathan went to the store, John gave a drink to".into()),
        ..ioi(CORRUPTED)
    };
    let e = prepare_pairs(&m.tokenizer, &[bad], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different token lengths") && e.contains("clean:") && e.contains("corrupted:"),
        "{e}"
    );
    let multi = PromptPair {
        answer: " Marylebone".into(),
        ..ioi(CORRUPTED)
    };
    let e = prepare_pairs(&m.tokenizer, &[multi], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("answer") && e.contains("tokens"), "{e}");
}

#[test]
fn attribution_matches_exact_patching_for_small_perturbations() {
    // With a tiny corruption the patched runs are linear in the patch, so the
    // first-order attribution estimate must match exact patching closely.
    for model in ["gpt2-tiny", "llama-tiny"] {
        let m = load(model);
        let pair = PromptPair {
            corrupted: None,
            ..ioi(CORRUPTED)
        };
        for target in [
            Target::ResidPre,
            Target::HeadOut,
            Target::MlpOut,
            Target::HeadPatternByPos,
            Target::TraceHidden,
        ] {
            let spec = SweepSpec {
                target,
                direction: Direction::Denoise,
                corruption: Corruption::Gaussian {
                    positions: vec![1, 2, 3],
                    scale: Some(1e-4),
                    samples: 1,
                    seed: 3,
                },
                window: 3,
            };
            let exact = sweep(&m, std::slice::from_ref(&pair), &spec, Method::Fast);
            let attr = sweep(&m, std::slice::from_ref(&pair), &spec, Method::Attribution);
            let base = exact.baselines.corrupted.logit_diff();
            let effects: Vec<(f32, f32)> = exact.metrics["logit_diff"]
                .iter()
                .zip(&attr.metrics["logit_diff"])
                .filter(|(e, _)| e.is_finite())
                .map(|(e, a)| (e - base, a - base))
                .collect();
            let scale = effects.iter().map(|(e, _)| e.abs()).fold(0f32, f32::max);
            assert!(
                scale > 1e-5,
                "{model} {target}: no effect to compare ({scale})"
            );
            for (i, (e, a)) in effects.iter().enumerate() {
                assert!(
                    (e - a).abs() <= 0.02 * scale + 1e-6,
                    "{model} {target}[{i}]: exact {e} vs attribution {a}"
                );
            }
            assert!(
                attr.metrics["kl"].iter().all(|x| x.is_nan()),
                "attribution estimates only logit_diff"
            );
            assert!(attr.timing.forward_passes < exact.timing.forward_passes);
        }
    }
}

#[test]
fn a_subset_of_cells_can_be_patched_exactly() {
    let m = load("gpt2-tiny");
    let prepared = prepare_pairs(&m.tokenizer, &[ioi(CORRUPTED)], None).unwrap();
    let spec = SweepSpec::new(Target::HeadOut);
    let full = run_sweep(
        &m.model,
        &prepared,
        &spec,
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let opts = EngineOptions {
        cells: Some(vec![1, 6]),
        ..Default::default()
    };
    let part = run_sweep(&m.model, &prepared, &spec, &opts, None, &mut |_| {}).unwrap();
    for i in 0..full.n_cells() {
        let (f, p) = (full.metrics["logit_diff"][i], part.metrics["logit_diff"][i]);
        if i == 1 || i == 6 {
            assert!((f - p).abs() < 1e-5, "cell {i}: full sweep {f}, subset {p}");
        } else {
            assert!(p.is_nan());
        }
    }
}

#[test]
fn progress_reports_every_cell_once_with_final_values() {
    let m = load("llama-tiny");
    let prepared = prepare_pairs(&m.tokenizer, &[ioi(CORRUPTED)], None).unwrap();
    let spec = SweepSpec::new(Target::ResidPre);
    let mut seen = std::collections::BTreeMap::new();
    let mut last_done = 0;
    let r = run_sweep(
        &m.model,
        &prepared,
        &spec,
        &EngineOptions::default(),
        None,
        &mut |p| {
            assert!(p.done >= last_done && p.done <= p.total);
            last_done = p.done;
            assert_eq!(p.baselines.clean.get("logit_diff_normalized"), Some(1.0));
            for (c, metrics) in &p.finished {
                assert!(
                    seen.insert(*c, *metrics).is_none(),
                    "cell {c} reported twice"
                );
            }
        },
    )
    .unwrap();
    assert_eq!(seen.len(), r.n_cells());
    for (c, metrics) in seen {
        for name in METRICS {
            let (a, b) = (metrics.get(name).unwrap(), r.metrics[*name][c]);
            assert!(
                (a - b).abs() < 1e-6,
                "cell {c} {name}: progress {a}, result {b}"
            );
        }
    }
}
