//! The metric registry drives the engine and the outputs: test builds carry
//! a seventh metric (`answer_logit`, the answer's raw logit), and nothing
//! in the engine or the JSON/CSV/table outputs was told about it.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::model::loaded::LoadOptions;
use crate::model::{ForwardOptions, HookSpec, LoadedModel};

use super::output::{SweepReport, TokenList};
use super::{
    prepare_pairs, run_sweep, EngineOptions, Method, PreparedPair, PromptPair, SweepResult,
    SweepSpec, Target, METRICS,
};

/// The tiny GPT-2 fixture.
pub(crate) fn tiny() -> LoadedModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let opts = LoadOptions::cpu();
    LoadedModel::load(dir.to_str().unwrap(), &opts).unwrap()
}

/// An IOI pair whose prompts differ at one position.
pub(crate) fn pair() -> PromptPair {
    PromptPair {
        clean: "When Mary and John went to the store, John gave a drink to".into(),
        corrupted: Some("When Mary and John went to the store, Mary gave a drink to".into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

/// A `resid_pre` sweep of [`pair`] on `m`.
pub(crate) fn sweep(m: &LoadedModel, method: Method) -> (Vec<PreparedPair>, SweepResult) {
    let pairs = prepare_pairs(&m.tokenizer, &[pair()], None).unwrap();
    let opts = EngineOptions {
        method,
        ..Default::default()
    };
    let spec = SweepSpec::new(Target::ResidPre);
    let r = run_sweep(&m.model, &pairs, &spec, &opts, None, &mut |_| {}).unwrap();
    (pairs, r)
}

/// The last-position logit of `token` in a plain forward of `tokens`.
fn last_logit(m: &LoadedModel, tokens: &[u32], token: u32) -> f32 {
    let t = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(Some(&t), &HookSpec::default(), &ForwardOptions::default())
        .unwrap();
    let logits: Vec<Vec<Vec<f32>>> = out.logits.unwrap().to_vec3().unwrap();
    logits[0][tokens.len() - 1][token as usize]
}

#[test]
fn the_engine_computes_a_metric_added_to_the_registry() {
    let m = tiny();
    let (pairs, fast) = sweep(&m, Method::Fast);
    let p = &pairs[0];
    let al = |x: &super::Metrics| x.get("answer_logit").unwrap();
    // Baselines are the plain runs' answer logits.
    let clean = last_logit(&m, &p.clean, p.answer);
    let corrupted = last_logit(&m, &p.corrupted, p.answer);
    assert!((al(&fast.baselines.clean) - clean).abs() < 1e-4);
    assert!((al(&fast.baselines.corrupted) - corrupted).abs() < 1e-4);
    assert!((clean - corrupted).abs() > 1e-3, "the prompts must differ");
    // Every cell has it; the naive path agrees with the fast one.
    let (_, naive) = sweep(&m, Method::Naive);
    let (f, n) = (
        &fast.metrics["answer_logit"],
        &naive.metrics["answer_logit"],
    );
    assert_eq!(f.len(), fast.n_cells());
    for (x, y) in f.iter().zip(n) {
        assert!(
            x.is_finite() && (x - y).abs() < 1e-4,
            "fast {x} vs naive {y}"
        );
    }
    // Restoring the one differing position before layer 0 restores the
    // clean answer logit.
    let pos = p.differing_positions()[0];
    let cell = fast.index(&[0, pos]);
    assert!((f[cell] - clean).abs() < 1e-4, "{} vs {clean}", f[cell]);
    // The per-pair values carry it too.
    assert_eq!(fast.per_pair[0]["answer_logit"], *f);
}

#[test]
fn attribution_leaves_a_new_metric_missing_rather_than_wrong() {
    let m = tiny();
    let (_, r) = sweep(&m, Method::Attribution);
    assert!(r.metrics["answer_logit"].iter().all(|x| x.is_nan()));
    assert!(r.metrics["logit_diff"].iter().any(|x| x.is_finite()));
}

fn report<'a>(r: &'a SweepResult, spec: &'a SweepSpec) -> SweepReport<'a> {
    let tl = |n: usize| TokenList {
        ids: (0..n as u32).collect(),
        strings: (0..n).map(|i| format!(" t{i}")).collect(),
    };
    let n_pos = r.shape[1];
    SweepReport {
        model: "gpt2-tiny",
        spec,
        clean: tl(n_pos),
        corrupted: tl(n_pos),
        answer: (1, " Mary".into()),
        wrong: (2, " John".into()),
        result: r,
        load_ms: 0.0,
    }
}

#[test]
fn outputs_print_a_metric_added_to_the_registry() {
    let m = tiny();
    let (_, r) = sweep(&m, Method::Fast);
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec);
    let json = rep.to_json();
    let want = r.baselines.clean.get("answer_logit").unwrap();
    let got = json["baselines"]["clean"]["answer_logit"].as_f64().unwrap() as f32;
    assert_eq!(got, want);
    let nested = &json["metrics"]["answer_logit"];
    assert_eq!(nested.as_array().unwrap().len(), r.shape[0]);
    let first = nested[0][0].as_f64().unwrap() as f32;
    assert_eq!(first, r.metrics["answer_logit"][0]);
    let csv = rep.to_csv();
    let header = csv.lines().next().unwrap();
    assert_eq!(header, format!("layer,pos,{}", METRICS.join(",")));
    assert!(header.ends_with(",rank,multi_logit_diff,answer_logit"));
    let row1: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row1.len(), 2 + METRICS.len());
    assert_eq!(row1.last().unwrap().parse::<f32>().unwrap(), first);
    let table = rep.to_table("answer_logit", false);
    assert!(table.contains(": answer_logit"), "{table}");
    assert!(table.contains(&format!("clean {want:.3}")), "{table}");
}

#[test]
fn outputs_of_a_result_stored_without_a_metric_show_it_missing() {
    let m = tiny();
    let (_, mut r) = sweep(&m, Method::Fast);
    r.metrics.remove("answer_logit");
    r.per_pair[0].remove("answer_logit");
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec);
    let json = rep.to_json();
    let rows = json["metrics"]["answer_logit"].as_array().unwrap();
    assert_eq!(rows.len(), r.shape[0]);
    assert!(rows
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .all(|v| v.is_null()));
    assert!(rep.to_csv().lines().nth(1).unwrap().ends_with(','));
    assert!(rep.to_table("answer_logit", false).contains("·"));
    assert_eq!(r.missing_metrics(), vec!["answer_logit"]);
    assert!(r.cell(0).get("answer_logit").unwrap().is_nan());
}
