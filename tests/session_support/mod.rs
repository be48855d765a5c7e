//! Helpers shared by the session tests: sessions with synthetic results
//! (no model needed), and reading the repository's session files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patchbench::patching::output::TokenList;
use patchbench::patching::result::{Baselines, Timing};
use patchbench::patching::{Metrics, PromptPair, SweepResult, SweepSpec, Target, METRICS};
use patchbench::session::{Session, StoredResult, SweepEntry};

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn ioi_pair() -> PromptPair {
    PromptPair {
        clean: "When Mary and John went to the store, John gave a drink to".into(),
        corrupted: Some("When Mary and John went to the store, Mary gave a drink to".into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

/// A deterministic pseudo-random f32 stream (xorshift), so tests need no seed plumbing.
pub struct Xs(pub u64);

impl Xs {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0
    }
}

/// A stored result of `shape` with pseudo-random values, NaN in every
/// seventh cell (absent cells), and awkward floats in the first cells.
pub fn fake_result(target: Target, axes: &[&str], shape: &[usize], seed: u64) -> StoredResult {
    let n: usize = shape.iter().product();
    let mut rng = Xs(seed | 1);
    let mut column = || -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| if i % 7 == 6 { f32::NAN } else { rng.f32() })
            .collect();
        let odd = [-0.0, f32::MIN_POSITIVE, 1e-42, f32::MAX, 0.1, f32::INFINITY];
        for (x, o) in v.iter_mut().zip(odd) {
            *x = o;
        }
        v
    };
    let metrics: BTreeMap<String, Vec<f32>> =
        METRICS.iter().map(|m| (m.to_string(), column())).collect();
    let base = Metrics::from_values([1.5, 1.0, -0.25, 0.75, 0.0, 1.0, 1.5]);
    let baselines = Baselines {
        clean: base,
        corrupted: Metrics::from_values([-1.0, 0.0, -3.0, 0.05, 2.5, 40.0, -1.0]),
    };
    // The stored prompt is as long as the position axis (a result that
    // does not match its tokens is refused on load).
    let n_pos = axes
        .iter()
        .position(|a| *a == "pos" || *a == "dest_pos")
        .map_or(17, |i| shape[i]);
    let strings: Vec<String> = (0..n_pos).map(|i| format!(" tok{i}")).collect();
    let _ = target;
    StoredResult {
        fingerprint: "00000000deadbeef".into(),
        inputs: String::new(),
        computed_at: "2024-05-01T12:00:00Z".into(),
        load_ms: 12.5,
        clean_tokens: TokenList {
            ids: (0..n_pos as u32).collect(),
            strings: strings.clone(),
        },
        corrupted_tokens: TokenList {
            ids: (0..n_pos as u32).rev().collect(),
            strings,
        },
        answer: " Mary".into(),
        answer_id: 3,
        wrong: " John".into(),
        wrong_id: 4,
        result: SweepResult {
            axes: axes.iter().map(|s| s.to_string()).collect(),
            shape: shape.to_vec(),
            components: if axes[0] == "component" {
                (0..shape[0]).map(|i| format!("comp{i}")).collect()
            } else {
                vec![]
            },
            per_pair: vec![metrics.clone()],
            metrics,
            baselines,
            pair_baselines: vec![baselines],
            timing: Timing {
                sweep_ms: 1234.567,
                forward_passes: 42,
                device: "cpu".into(),
            },
            method: "exact".into(),
            position_labels: vec![],
        },
    }
}

/// A session with two sweeps, one holding a result of `shape`.
pub fn session_with_result(shape: &[usize], seed: u64) -> Session {
    let mut s = Session::new("demo", ioi_pair());
    s.sweeps.push(SweepEntry {
        spec: SweepSpec::new(Target::ResidPre),
        pairs: None,
        result: Some(fake_result(
            Target::ResidPre,
            &["layer", "pos"],
            shape,
            seed,
        )),
    });
    s.sweeps.push(SweepEntry {
        spec: SweepSpec::new(Target::HeadOut),
        pairs: Some(vec![0]),
        result: None,
    });
    s.notes = format!("seed {seed}\nsecond line\n");
    s
}

/// Session equality that treats NaN as equal to NaN (the derived
/// `PartialEq` does not): compare the untyped trees.
pub fn same(a: &Session, b: &Session) -> bool {
    serde_yaml::to_value(a).unwrap() == serde_yaml::to_value(b).unwrap()
}

/// Bitwise equality of every stored metric value.
pub fn same_bits(a: &Session, b: &Session) -> bool {
    let bits = |s: &Session| -> Vec<u32> {
        s.sweeps
            .iter()
            .filter_map(|e| e.result.as_ref())
            .flat_map(|r| {
                r.result
                    .metrics
                    .values()
                    .chain(r.result.per_pair.iter().flat_map(|m| m.values()))
                    .flatten()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    bits(a) == bits(b)
}

/// `spec` run afresh on `model` over `pairs` with the default engine options.
pub fn recompute(
    model: &patchbench::model::Transformer,
    pairs: &[patchbench::patching::PreparedPair],
    spec: &SweepSpec,
) -> SweepResult {
    patchbench::patching::run_sweep(
        model,
        pairs,
        spec,
        &patchbench::patching::EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap()
}

/// Asserts `fresh` has `stored`'s shape and every metric value: bit for bit
/// when `tol` is 0, else within `tol` relative to `1 + |fresh|` (NaN matches
/// NaN). `what` names the sweep in failure messages.
pub fn assert_same_metrics(stored: &SweepResult, fresh: &SweepResult, tol: f32, what: &str) {
    assert_eq!(stored.shape, fresh.shape, "{what}");
    for metric in METRICS {
        for (x, y) in stored.metrics[*metric].iter().zip(&fresh.metrics[*metric]) {
            let same = if tol == 0.0 {
                x.to_bits() == y.to_bits()
            } else {
                (x - y).abs() <= tol * (1.0 + y.abs())
            };
            assert!(
                same || (x.is_nan() && y.is_nan()),
                "{what} {metric}: stored {x}, recomputed {y}"
            );
        }
    }
}
