//! patchbench's sweeps against TransformerLens `patching.py`, cell by cell.
//!
//! `tools/patching_reference.py` runs TransformerLens's own patching functions
//! (HookedTransformer, raw weights, denoising) on the tiny GPT-2 and Llama (GQA)
//! fixtures for every target the two share (17 sweeps: resid_pre/mid/post,
//! attn_out, mlp_out, head_{out,q,k,v,pattern} at all positions and by
//! position, heads_every, block_every) and writes
//! `tests/fixtures/<name>/patching_reference.json`. Here patchbench runs the
//! same sweeps three ways: the engine's fast path (the default), its naive
//! one-forward-per-cell path, and the independent reference
//! (`patching::reference`, no planning code shared with the engine). Every
//! cell's `logit_diff`, `kl` and `logprob` must equal TransformerLens's within
//! 1e-5 (absolute, relative above 1; see [`TOL`]), with the same axes, shape
//! and components; cells TransformerLens leaves out (key/value heads beyond
//! `n_kv_heads` in `heads_every`, null in the file) must be NaN. A missing
//! reference file or sweep fails.

mod common;

use std::collections::BTreeMap;

use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::reference::{reference_sweep, ReferenceResult};
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, Method, Metrics, PreparedPair, PromptPair,
    SweepResult, SweepSpec, Target,
};
use serde_json::Value;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";
const ANSWER: &str = " Mary";
const WRONG: &str = " John";

/// Metrics the reference holds.
const METRICS: &[&str] = &["logit_diff", "kl", "logprob"];

/// Reference sweep name -> patchbench target.
const SWEEPS: &[(&str, Target)] = &[
    ("resid_pre", Target::ResidPre),
    ("resid_mid", Target::ResidMid),
    ("resid_post", Target::ResidPost),
    ("attn_out", Target::AttnOut),
    ("mlp_out", Target::MlpOut),
    ("head_out", Target::HeadOut),
    ("head_q", Target::HeadQ),
    ("head_k", Target::HeadK),
    ("head_v", Target::HeadV),
    ("head_pattern", Target::HeadPattern),
    ("head_out_by_pos", Target::HeadOutByPos),
    ("head_q_by_pos", Target::HeadQByPos),
    ("head_k_by_pos", Target::HeadKByPos),
    ("head_v_by_pos", Target::HeadVByPos),
    ("head_pattern_by_pos", Target::HeadPatternByPos),
    ("heads_every", Target::HeadsEvery),
    ("block_every", Target::BlockEvery),
];

/// 1e-5, absolute below 1 and relative above. Both sides run float32 and
/// differ only in summation order; the measured maxima are printed per sweep
/// (about 1e-6). `kl` (values below 0.04 here) is held to the same 1e-5
/// absolutely: on gpt2-tiny KL(patched || clean) differs from KL(clean ||
/// patched) by up to 6.6e-5, so the divergence taken the wrong way round fails.
const TOL: f64 = 1e-5;

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() <= TOL * y.abs().max(1.0)
}

fn reference(name: &str) -> Value {
    let p = fixture(name).join("patching_reference.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nGenerate it with tools/patching_reference.py (TransformerLens 3.x; see its docstring).",
            p.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array of strings")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

/// Row-major values and the shape of a nested JSON array.
fn flatten(v: &Value) -> (Vec<f64>, Vec<usize>) {
    fn walk(v: &Value, depth: usize, out: &mut Vec<f64>, shape: &mut Vec<usize>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                } else {
                    assert_eq!(shape[depth], items.len(), "ragged nested array");
                }
                for it in items {
                    walk(it, depth + 1, out, shape);
                }
            }
            // A cell TransformerLens leaves out.
            Value::Null => out.push(f64::NAN),
            x => out.push(x.as_f64().expect("number")),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    walk(v, 0, &mut out, &mut shape);
    (out, shape)
}

/// Largest difference seen and the cells outside tolerance.
#[derive(Default)]
struct Report {
    max_abs: f64,
    max_rel: f64,
    compared: usize,
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, what: &str, got: f32, want: f64) {
        let got = got as f64;
        if want.is_nan() {
            if !got.is_nan() {
                self.failures.push(format!(
                    "{what}: patchbench {got} where TransformerLens has no cell"
                ));
            }
            return;
        }
        self.compared += 1;
        let d = (got - want).abs();
        if d.is_nan() || !close(got, want) {
            self.failures.push(format!(
                "{what}: patchbench {got} vs TransformerLens {want} (diff {d:.3e})"
            ));
        }
        if d.is_finite() {
            self.max_abs = self.max_abs.max(d);
            self.max_rel = self.max_rel.max(d / want.abs().max(1e-12));
        }
    }
}

/// What one way of running a sweep gave, in the reference's terms.
struct Got {
    axes: Vec<String>,
    shape: Vec<usize>,
    components: Vec<String>,
    clean: Metrics,
    corrupted: Metrics,
    /// Metric name -> row-major cells (NaN where a cell does not exist).
    cells: BTreeMap<String, Vec<f32>>,
}

impl From<SweepResult> for Got {
    fn from(r: SweepResult) -> Self {
        Got {
            axes: r.axes,
            shape: r.shape,
            components: r.components,
            clean: r.baselines.clean,
            corrupted: r.baselines.corrupted,
            cells: r.metrics,
        }
    }
}

impl From<ReferenceResult> for Got {
    fn from(r: ReferenceResult) -> Self {
        let cells = METRICS
            .iter()
            .map(|m| {
                let column = r
                    .cells
                    .iter()
                    .map(|c| c.map_or(f32::NAN, |c| c.get(m).unwrap()))
                    .collect();
                (m.to_string(), column)
            })
            .collect();
        Got {
            axes: r.axes,
            shape: r.shape,
            components: r.components,
            clean: r.clean,
            corrupted: r.corrupted,
            cells,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Way {
    Fast,
    Naive,
    Reference,
}

fn run(m: &LoadedModel, pairs: &[PreparedPair], target: Target, way: Way) -> Got {
    let spec = SweepSpec::new(target);
    let engine = |method| {
        let opts = EngineOptions {
            method,
            ..Default::default()
        };
        run_sweep(&m.model, pairs, &spec, &opts, None, &mut |_| {})
            .unwrap_or_else(|e| panic!("{target} ({way:?}): {e}"))
    };
    match way {
        Way::Fast => engine(Method::Fast).into(),
        Way::Naive => engine(Method::Naive).into(),
        Way::Reference => reference_sweep(&m.model, pairs, &spec)
            .unwrap_or_else(|e| panic!("{target} ({way:?}): {e}"))
            .into(),
    }
}

fn check_fixture(name: &str) {
    let r = reference(name);
    let prompts = &r["prompts"];
    assert_eq!(prompts["clean"], CLEAN, "{name}: reference clean prompt");
    assert_eq!(
        prompts["corrupted"], CORRUPTED,
        "{name}: reference corrupted prompt"
    );
    assert_eq!(prompts["answer"], ANSWER);
    assert_eq!(prompts["wrong"], WRONG);

    let m = LoadedModel::load(fixture(name).to_str().unwrap(), &LoadOptions::cpu())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let pair = PromptPair {
        clean: CLEAN.into(),
        corrupted: Some(CORRUPTED.into()),
        answer: ANSWER.into(),
        wrong: WRONG.into(),
    };
    let prepared = prepare_pairs(&m.tokenizer, &[pair], None).unwrap();
    let p = &prepared[0];
    assert_eq!(p.clean, ids(&r["clean_ids"]), "{name}: clean token ids");
    assert_eq!(
        p.corrupted,
        ids(&r["corrupted_ids"]),
        "{name}: corrupted token ids"
    );
    assert_eq!(
        p.answer as u64,
        r["answer_id"].as_u64().unwrap(),
        "{name}: answer id"
    );
    assert_eq!(
        p.wrong as u64,
        r["wrong_id"].as_u64().unwrap(),
        "{name}: wrong id"
    );

    let sweeps = r["sweeps"].as_object().expect("sweeps");
    assert_eq!(
        sweeps.len(),
        SWEEPS.len(),
        "{name}: the reference has sweeps {:?}",
        sweeps.keys().collect::<Vec<_>>()
    );
    for (sweep, _) in SWEEPS {
        assert!(
            sweeps.contains_key(*sweep),
            "{name}: reference lacks sweep {sweep}"
        );
    }

    let mut failures = Vec::new();
    // Per sweep: the largest |diff| over every way and metric, for the summary.
    let mut worst: Vec<(&str, f64)> = Vec::new();
    for way in [Way::Fast, Way::Naive, Way::Reference] {
        let mut baselines_checked = false;
        for &(sweep, target) in SWEEPS {
            let want = &sweeps[sweep];
            let got = run(&m, &prepared, target, way);
            let label = format!("{name} {sweep} ({way:?})");
            assert_eq!(got.axes, strs(&want["axes"]), "{label}: axes");
            if let Some(c) = want.get("components") {
                assert_eq!(got.components, strs(c), "{label}: components");
            }

            if !baselines_checked {
                let mut rep = Report::default();
                for (run, b) in [("clean", &got.clean), ("corrupted", &got.corrupted)] {
                    for metric in METRICS {
                        let w = r["baselines"][run][*metric].as_f64().expect("baseline");
                        let g = b.get(metric).unwrap();
                        rep.check(&format!("{label} baseline {run} {metric}"), g, w);
                    }
                }
                eprintln!(
                    "{name} baselines ({way:?}): max |diff| {:.2e} over {} values",
                    rep.max_abs, rep.compared
                );
                failures.extend(rep.failures);
                baselines_checked = true;
            }

            let ref_shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(got.shape, ref_shape, "{label}: shape");
            for metric in METRICS {
                let (vals, shape) = flatten(&want[*metric]);
                assert_eq!(got.shape, shape, "{label}: shape of {metric}");
                let cells = &got.cells[*metric];
                assert_eq!(cells.len(), vals.len(), "{label}: {metric} cell count");
                let mut rep = Report::default();
                for (i, (&g, &w)) in cells.iter().zip(&vals).enumerate() {
                    let idx = unravel(i, &got.shape);
                    rep.check(&format!("{label} {metric}{idx:?}"), g, w);
                }
                eprintln!(
                    "{label} {metric}: {} cells, max |diff| {:.2e}, max rel {:.2e}",
                    rep.compared, rep.max_abs, rep.max_rel
                );
                match worst.iter_mut().find(|(s, _)| *s == sweep) {
                    Some((_, w)) => *w = w.max(rep.max_abs),
                    None => worst.push((sweep, rep.max_abs)),
                }
                failures.extend(rep.failures);
            }
        }
    }
    eprintln!("{name}: max |diff| from TransformerLens per sweep (fast, naive, reference; logit_diff, kl, logprob): {worst:?}");
    assert!(
        failures.is_empty(),
        "{name}: {} values differ from TransformerLens:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, n) in shape.iter().enumerate().rev() {
        idx[d] = i % n;
        i /= n;
    }
    idx
}

#[test]
fn gpt2_tiny_matches_transformer_lens() {
    check_fixture("gpt2-tiny");
}

#[test]
fn llama_tiny_gqa_matches_transformer_lens() {
    check_fixture("llama-tiny");
}
