//! `patchbench sweep` and `patchbench run` as a user calls them: the JSON
//! output against DESIGN.md's contract, CSV, the table, and the errors.

mod common;
use common::cli::patchbench;

use serde_json::Value;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";

fn sweep(target: &str, format: &str, extra: &[&str]) -> std::process::Output {
    sweep_with(CORRUPTED, " Mary", target, format, extra)
}

fn sweep_with(
    corrupted: &str,
    answer: &str,
    target: &str,
    format: &str,
    extra: &[&str],
) -> std::process::Output {
    let model = common::fixture("llama-tiny");
    let mut args = vec![
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--clean",
        CLEAN,
        "--corrupted",
        corrupted,
        "--answer",
        answer,
        "--wrong",
        " John",
        "--target",
        target,
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    patchbench(&args)
}

/// Checks a nested array against `shape`, returning the leaf count.
fn check_nested(v: &Value, shape: &[u64]) -> usize {
    match shape {
        [] => {
            assert!(v.is_number() || v.is_null(), "leaf {v}");
            1
        }
        [n, rest @ ..] => {
            let a = v.as_array().expect("nested array");
            assert_eq!(a.len() as u64, *n);
            a.iter().map(|x| check_nested(x, rest)).sum()
        }
    }
}

#[test]
fn json_output_follows_the_contract() {
    let out = sweep("resid_pre", "json", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "model",
        "target",
        "direction",
        "corruption",
        "clean_tokens",
        "corrupted_tokens",
        "answer",
        "wrong",
        "baselines",
        "axes",
        "shape",
        "metrics",
        "timing",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["target"], "resid_pre");
    assert_eq!(v["direction"], "denoise");
    assert_eq!(v["corruption"]["kind"], "prompt");
    assert_eq!(v["axes"], serde_json::json!(["layer", "pos"]));
    let ids = v["clean_tokens"]["ids"].as_array().unwrap();
    let strings = v["clean_tokens"]["strings"].as_array().unwrap();
    assert_eq!(ids.len(), strings.len());
    assert_eq!(
        v["corrupted_tokens"]["ids"].as_array().unwrap().len(),
        ids.len()
    );
    assert_eq!(v["answer"]["string"], " Mary");
    assert_eq!(v["wrong"]["string"], " John");
    let shape: Vec<u64> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(shape, vec![2, ids.len() as u64]);
    let names = [
        "logit_diff",
        "logit_diff_normalized",
        "logprob",
        "prob",
        "kl",
        "rank",
        "multi_logit_diff",
    ];
    assert_eq!(v["metrics"].as_object().unwrap().len(), names.len());
    // One answer and one wrong: the multi-answer metric is the logit difference.
    assert_eq!(v["metrics"]["multi_logit_diff"], v["metrics"]["logit_diff"]);
    for m in names {
        assert_eq!(check_nested(&v["metrics"][m], &shape), ids.len() * 2);
        for b in ["clean", "corrupted"] {
            assert!(v["baselines"][b][m].is_number(), "baseline {b}.{m}");
        }
    }
    assert_eq!(v["baselines"]["clean"]["logit_diff_normalized"], 1.0);
    for k in ["load_ms", "sweep_ms", "forward_passes"] {
        assert!(v["timing"][k].as_f64().unwrap() > 0.0, "timing.{k}");
    }
    assert_eq!(v["timing"]["device"], "cpu");
}

#[test]
fn heads_every_json_has_components_and_null_for_missing_kv_heads() {
    let out = sweep("heads_every", "json", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["axes"], serde_json::json!(["component", "layer", "head"]));
    assert_eq!(
        v["components"],
        serde_json::json!(["output", "query", "key", "value", "pattern"])
    );
    // llama-tiny has 4 query heads and 2 key/value heads.
    assert!(v["metrics"]["logit_diff"][2][0][3].is_null());
    assert!(v["metrics"]["logit_diff"][2][0][1].is_number());
}

#[test]
fn csv_has_a_row_per_cell() {
    let out = sweep("head_out", "csv", &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "layer,head,logit_diff,logit_diff_normalized,logprob,prob,kl,rank,multi_logit_diff"
    );
    assert_eq!(lines.count(), 2 * 4);
}

#[test]
fn table_and_out_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.txt");
    let out = sweep(
        "resid_pre",
        "table",
        &["--out", path.to_str().unwrap(), "--metric", "logit_diff"],
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("logit_diff") && text.contains(" Mary") && !text.contains('\x1b'),
        "{text}"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let longer = "When Mary and Johnathan went to the store, John gave a drink to";
    let out = sweep_with(longer, " Mary", "resid_pre", "json", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different token lengths") && err.contains("clean:"),
        "{err}"
    );

    let out = sweep_with(CORRUPTED, " Marylebone", "resid_pre", "json", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("answer"), "{err}");

    let out = sweep("resid_posts", "json", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("valid targets are")
            && err.contains("head_pattern_by_pos"),
        "{err}"
    );

    let out = sweep("resid_pre", "json", &["--corruption", "zero"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("direction noise"),
        "{err}"
    );
}

#[test]
fn run_prints_the_next_token_distribution() {
    let model = common::fixture("gpt2-tiny");
    let out = patchbench(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        CLEAN,
        "--format",
        "json",
        "-k",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]));
    assert!(top[0]["token"].is_string() && top[0]["id"].is_u64() && top[0]["logit"].is_number());
}
