//! The engine's fast path against the independent reference
//! (`patching::reference`: one plain forward per cell built only from
//! `HookSpec` replace interventions, sharing no planning code with the
//! engine), on every target × direction × corruption for the GPT-2, GPT-NeoX
//! (parallel and sequential residual) and Llama (grouped-query attention)
//! fixtures.
//!
//! Tolerance: see [`TOL`]. Targets a family lacks are skipped exactly where
//! the model-availability function says so, and there both the engine and
//! the reference must refuse them.

mod common;

use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::metrics::{Compute, Format, MetricDef, REGISTRY};
use patchbench::patching::reference::{reference_sweep, ReferenceError, ReferenceResult};
use patchbench::patching::spec::ALL_TARGETS;
use patchbench::patching::{
    prepare_pairs, run_sweep, Corruption, Direction, EngineOptions, Metrics, PreparedPair,
    PromptPair, SweepResult, SweepSpec, Target, METRICS,
};

/// Absolute tolerance on every metric but the normalised logit difference
/// (which divides by the baselines' difference, see `tol`) and the rank
/// (compared exactly). Both paths run float32 on the CPU; they differ only in
/// summation order (the fast path resumes mid-network from cached residuals
/// and keys/values, batches and packs rows), which on these tiny models moves
/// values by about 1e-6 (the measured maxima are printed by each test).
const TOL: f32 = 1e-5;

fn load(name: &str) -> LoadedModel {
    let opts = LoadOptions::cpu();
    LoadedModel::load(fixture(name).to_str().unwrap(), &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A short IOI pair (10 tokens, 11 with Llama's BOS) keeps the reference's
/// one forward per cell cheap; the prompts differ at two positions.
fn ioi(clean: &str, corrupted: &str) -> PromptPair {
    PromptPair {
        clean: clean.into(),
        corrupted: Some(corrupted.into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

const CLEAN: &str = "When Mary and John went, John gave it to";
const CORRUPTED: &str = "When John and Mary went, John gave it to";

/// Every corruption the spec supports, with the directions it runs in.
fn corruptions() -> Vec<(Corruption, Direction, usize)> {
    let gauss = |positions: Vec<usize>, scale, samples, seed| Corruption::Gaussian {
        positions,
        scale,
        samples,
        seed,
    };
    vec![
        (Corruption::Prompt, Direction::Denoise, 2),
        (Corruption::Prompt, Direction::Noise, 3),
        (gauss(vec![], None, 2, 7), Direction::Denoise, 2),
        (gauss(vec![4, 2], Some(0.5), 2, 1), Direction::Noise, 3),
        (Corruption::Zero { positions: vec![] }, Direction::Noise, 2),
        (
            Corruption::Mean {
                positions: vec![1, 2],
            },
            Direction::Noise,
            2,
        ),
    ]
}

/// Largest differences seen, per metric.
#[derive(Default)]
struct Worst(Vec<(String, f32)>);

impl Worst {
    fn see(&mut self, metric: &str, d: f32) {
        match self.0.iter_mut().find(|(m, _)| m == metric) {
            Some((_, w)) => *w = w.max(d),
            None => self.0.push((metric.to_string(), d)),
        }
    }

    fn merge(&mut self, other: &Worst) {
        for (m, d) in &other.0 {
            self.see(m, *d);
        }
    }

    /// The largest difference over the metrics compared absolutely (not the
    /// normalised ones, which divide by the baselines' spread).
    fn absolute(&self) -> f32 {
        let normalised = |m: &str| {
            REGISTRY
                .iter()
                .any(|d| d.name == m && matches!(d.compute, Compute::Normalized { .. }))
        };
        self.0
            .iter()
            .filter(|(m, _)| !normalised(m))
            .fold(0f32, |a, (_, d)| a.max(*d))
    }
}

/// Tolerance for metric `def` at reference value `want`, given the two
/// baselines a normalised metric divides by: `(x − co) / (cl − co)` moves by
/// up to `(|dx| + |dco| + |want| (|dco| + |dcl|)) / |cl − co|` when each
/// underlying value moves by `d`. A rank may move by one: a logit within
/// rounding of the answer's (a near tie; the random fixtures have 1000s of
/// logits) lands on either side of it depending on the order of the sums.
fn tol(def: &MetricDef, want: f32, clean: &Metrics, corrupted: &Metrics) -> f32 {
    match (def.compute, def.format) {
        (Compute::Normalized { of }, _) => {
            let spread = (clean.get(of).unwrap() - corrupted.get(of).unwrap()).abs();
            2.0 * TOL * (1.0 + want.abs()) / spread.min(1.0)
        }
        (_, Format::Integer) => 1.0,
        _ => TOL,
    }
}

/// Baselines a cell is normalised by.
type Base<'a> = (&'a Metrics, &'a Metrics);

fn compare_cell(got: &Metrics, want: &Metrics, base: Base, what: &str, worst: &mut Worst) {
    for def in REGISTRY {
        let m = def.name;
        let (x, y) = (got.get(m).unwrap(), want.get(m).unwrap());
        let d = (x - y).abs();
        assert!(
            d <= tol(def, y, base.0, base.1),
            "{what} {m}: fast {x} vs reference {y} (diff {d:e})"
        );
        worst.see(m, d);
    }
}

fn compare(fast: &SweepResult, reference: &ReferenceResult, what: &str, worst: &mut Worst) {
    assert_eq!(fast.axes, reference.axes, "{what}: axes");
    assert_eq!(fast.shape, reference.shape, "{what}: shape");
    assert_eq!(fast.components, reference.components, "{what}: components");
    let base = (&reference.clean, &reference.corrupted);
    compare_cell(
        &fast.baselines.clean,
        &reference.clean,
        base,
        &format!("{what} clean"),
        worst,
    );
    compare_cell(
        &fast.baselines.corrupted,
        &reference.corrupted,
        base,
        &format!("{what} corrupted"),
        worst,
    );
    assert_eq!(
        fast.per_pair.len(),
        reference.per_pair.len(),
        "{what}: pairs"
    );
    let mut rows = vec![(&fast.metrics, &reference.cells, base, "mean".to_string())];
    for (i, (f, r)) in fast.per_pair.iter().zip(&reference.per_pair).enumerate() {
        let b = &fast.pair_baselines[i];
        rows.push((f, r, (&b.clean, &b.corrupted), format!("pair {i}")));
    }
    for (columns, cells, base, label) in rows {
        assert_eq!(cells.len(), fast.n_cells(), "{what}: cell count");
        for (c, want) in cells.iter().enumerate() {
            let got = Metrics::from_values(std::array::from_fn(|i| columns[METRICS[i]][c]));
            match want {
                Some(w) => compare_cell(&got, w, base, &format!("{what} {label} cell {c}"), worst),
                None => assert!(
                    got.values().iter().all(|v| v.is_nan()),
                    "{what} {label} cell {c}: the reference has no such cell, fast gave {got:?}"
                ),
            }
        }
    }
}

fn fast(m: &LoadedModel, pairs: &[PreparedPair], spec: &SweepSpec) -> SweepResult {
    let opts = EngineOptions {
        // Small batches, so several batches and start positions are exercised.
        max_batch_tokens: 40,
        ..Default::default()
    };
    run_sweep(&m.model, pairs, spec, &opts, None, &mut |_| {})
        .unwrap_or_else(|e| panic!("{spec:?}: {e}"))
}

fn check_family(name: &str) {
    let m = load(name);
    let pairs = prepare_pairs(&m.tokenizer, &[ioi(CLEAN, CORRUPTED)], None).unwrap();
    let mut worst = Worst::default();
    let mut per_target = Worst::default();
    let mut skipped = Vec::new();
    for (corruption, direction, window) in corruptions() {
        for &target in ALL_TARGETS {
            let spec = SweepSpec {
                target,
                direction,
                corruption: corruption.clone(),
                window,
            };
            let what = format!("{name} {target} {direction} {}", corruption.name());
            if !target.available_for(&m.model.cfg) {
                // Both refuse it: the reference because the plain forward
                // never visits the hook, the engine before running anything.
                let e = reference_sweep(&m.model, &pairs, &spec).unwrap_err();
                assert!(
                    matches!(e, ReferenceError::MissingHook { .. }),
                    "{what}: {e}"
                );
                let e = run_sweep(
                    &m.model,
                    &pairs,
                    &spec,
                    &EngineOptions::default(),
                    None,
                    &mut |_| {},
                )
                .unwrap_err();
                assert!(e.to_string().contains("does not have"), "{what}: {e}");
                skipped.push(what);
                continue;
            }
            let reference =
                reference_sweep(&m.model, &pairs, &spec).unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut here = Worst::default();
            compare(&fast(&m, &pairs, &spec), &reference, &what, &mut here);
            worst.merge(&here);
            per_target.see(target.name(), here.absolute());
        }
    }
    eprintln!(
        "{name}: max |fast - reference| per target over every direction, corruption and \
         non-normalised metric: {:?}",
        per_target.0
    );
    eprintln!(
        "{name}: max |fast - reference| {:?}; skipped {skipped:?}",
        worst.0
    );
}

#[test]
fn fast_equals_reference_gpt2() {
    check_family("gpt2-tiny");
}

#[test]
fn fast_equals_reference_neox_parallel() {
    check_family("pythia-tiny");
}

#[test]
fn fast_equals_reference_neox_sequential() {
    check_family("pythia-seq-tiny");
}

#[test]
fn fast_equals_reference_llama_gqa() {
    check_family("llama-tiny");
}

/// Sliding-window layers (window 4 under an 11-token prompt), soft-caps and
/// post-norms: causal reuse and packed rows must mask the window too.
#[test]
fn fast_equals_reference_gemma2_sliding_window() {
    check_family("gemma2-tiny");
}

/// q/k norms and a second rotary base on local layers.
#[test]
fn fast_equals_reference_gemma3() {
    check_family("gemma3-tiny");
}

/// Two pairs: per-pair values, means over pairs (and, for mean ablation,
/// ablation values averaged over both pairs' clean runs).
#[test]
fn fast_equals_reference_over_two_pairs() {
    let m = load("gpt2-tiny");
    let pairs = [
        ioi(CLEAN, CORRUPTED),
        ioi("When Mary and John went, Mary gave it to", CORRUPTED),
    ];
    let pairs = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    let mut worst = Worst::default();
    for (corruption, direction, window) in corruptions() {
        for target in [Target::ResidPre, Target::HeadsEvery, Target::TraceMlp] {
            let spec = SweepSpec {
                target,
                direction,
                corruption: corruption.clone(),
                window,
            };
            let what = format!("two pairs {target} {direction} {}", corruption.name());
            let reference =
                reference_sweep(&m.model, &pairs, &spec).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(reference.per_pair.len(), 2);
            compare(&fast(&m, &pairs, &spec), &reference, &what, &mut worst);
        }
    }
    eprintln!("two pairs: max |fast - reference| {:?}", worst.0);
}
