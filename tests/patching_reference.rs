//! patchbench's sweeps against TransformerLens `patching.py`, cell by cell.
//!
//! `tools/patching_reference.py` runs TransformerLens's own patching functions
//! (HookedTransformer, raw weights, denoising) on the tiny GPT-2 and Llama (GQA)
//! fixtures and writes `tests/fixtures/<name>/patching_reference.json`. Here
//! patchbench's engine runs the same sweeps, by its fast path (the default) and
//! by its naive one-forward-per-cell path, and every cell's `logit_diff`, `kl`
//! and `logprob` must equal TransformerLens's within 1e-4 (absolute, relative
//! above 1; `kl` within 1e-5 absolute, see [`KL_TOL`]), with the same axes
//! and shape. A missing reference file fails.

mod common;

use candle_core::{DType, Device};
use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, Method, PromptPair, SweepResult, SweepSpec, Target,
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
    ("attn_out", Target::AttnOut),
    ("mlp_out", Target::MlpOut),
    ("head_out", Target::HeadOut),
    ("head_pattern", Target::HeadPattern),
    ("head_out_by_pos", Target::HeadOutByPos),
    ("block_every", Target::BlockEvery),
];

/// 1e-4, absolute below 1 and relative above.
const TOL: f64 = 1e-4;
/// KL is checked tighter, absolutely: its values here are below 0.04, and on
/// gpt2-tiny KL(patched || clean) differs from KL(clean || patched) by at most
/// 6.6e-5, so 1e-4 would not notice the divergence taken the wrong way round.
/// Observed float32 differences from TransformerLens are below 1e-6.
const KL_TOL: f64 = 1e-5;

fn close(metric: &str, x: f64, y: f64) -> bool {
    let d = (x - y).abs();
    match metric {
        "kl" => d <= KL_TOL,
        _ => d <= TOL * y.abs().max(1.0),
    }
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
    fn check(&mut self, metric: &str, what: &str, got: f32, want: f64) {
        let got = got as f64;
        self.compared += 1;
        let d = (got - want).abs();
        if d.is_nan() || !close(metric, got, want) {
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

    let m = LoadedModel::load(
        fixture(name).to_str().unwrap(),
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
        },
    )
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
    for (sweep, _) in SWEEPS {
        assert!(
            sweeps.contains_key(*sweep),
            "{name}: reference lacks sweep {sweep}"
        );
    }

    let mut failures = Vec::new();
    let mut baselines_checked = false;
    for method in [Method::Fast, Method::Naive] {
        let opts = EngineOptions {
            method,
            ..Default::default()
        };
        for &(sweep, target) in SWEEPS {
            let want = &sweeps[sweep];
            let got: SweepResult = run_sweep(
                &m.model,
                &prepared,
                &SweepSpec::new(target),
                &opts,
                None,
                &mut |_| {},
            )
            .unwrap_or_else(|e| panic!("{name} {sweep}: {e}"));
            let label = format!("{name} {sweep} ({method:?})");
            assert_eq!(got.axes, strs(&want["axes"]), "{label}: axes");
            if let Some(c) = want.get("components") {
                assert_eq!(got.components, strs(c), "{label}: components");
            }

            if !baselines_checked {
                let mut rep = Report::default();
                for (run, b) in [
                    ("clean", &got.baselines.clean),
                    ("corrupted", &got.baselines.corrupted),
                ] {
                    for metric in METRICS {
                        let w = r["baselines"][run][*metric].as_f64().expect("baseline");
                        let g = b.get(metric).unwrap();
                        rep.check(metric, &format!("{name} baseline {run} {metric}"), g, w);
                    }
                }
                eprintln!(
                    "{name} baselines: max |diff| {:.2e} over {} values",
                    rep.max_abs, rep.compared
                );
                failures.extend(rep.failures);
                baselines_checked = true;
            }

            for metric in METRICS {
                let (vals, shape) = flatten(&want[*metric]);
                assert_eq!(got.shape, shape, "{label}: shape of {metric}");
                let ref_shape: Vec<usize> = want["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(got.shape, ref_shape, "{label}: shape");
                let cells = &got.metrics[*metric];
                assert_eq!(cells.len(), vals.len(), "{label}: {metric} cell count");
                let mut rep = Report::default();
                for (i, (&g, &w)) in cells.iter().zip(&vals).enumerate() {
                    let idx = unravel(i, &got.shape);
                    rep.check(metric, &format!("{label} {metric}{idx:?}"), g, w);
                }
                eprintln!(
                    "{label} {metric}: {} cells, max |diff| {:.2e}, max rel {:.2e}",
                    rep.compared, rep.max_abs, rep.max_rel
                );
                failures.extend(rep.failures);
            }
        }
    }
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
