//! `patchbench circuit --method path --sender S --receivers R,...`: one
//! path-patching query, checked against the edge searches (exact and path)
//! on the tiny grouped-query Llama fixture (82 edges; key/value receivers
//! are KV heads), and its refusals on the demo model.

use std::process::Command;

use serde_json::Value;

mod common;

fn llama_tiny() -> Vec<String> {
    let model = common::fixture("llama-tiny");
    [
        "--model",
        model.to_str().unwrap(),
        "--clean",
        "When Mary and John went to the store, John gave a drink to",
        "--corrupted",
        "When John and Mary went to the store, John gave a drink to",
        "--answer",
        " Mary",
        "--wrong",
        " John",
    ]
    .map(String::from)
    .to_vec()
}

fn demo() -> Vec<String> {
    [
        "--model",
        "demo",
        "--clean",
        "red cat tree bob tea fire rome lima milk oslo gold star river bob tea fire rome",
        "--corrupted",
        "red cat tree bob tea fire rome salt milk oslo gold star river bob tea fire rome",
        "--answer",
        "lima",
        "--wrong",
        "salt",
    ]
    .map(String::from)
    .to_vec()
}

fn circuit(extra: &[&str]) -> (bool, String, String) {
    run(&llama_tiny(), extra)
}

fn run(pair: &[String], extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .arg("circuit")
        .args(pair)
        .args(extra)
        .output()
        .expect("run patchbench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(extra: &[&str]) -> Value {
    let (ok, out, err) = circuit(extra);
    assert!(ok, "patchbench circuit {extra:?} failed: {err}");
    serde_json::from_str(&out).expect("JSON output")
}

/// The search's score of `sender -> receiver` for `metric`.
fn edge_score(search: &Value, sender: &str, receiver: &str, metric: &str) -> f64 {
    search["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == sender && e["receiver"] == receiver)
        .unwrap_or_else(|| panic!("{sender} -> {receiver} not listed"))["scores"][metric]
        .as_f64()
        .unwrap()
}

fn effect(q: &Value, metric: &str) -> f64 {
    q["effect"][metric].as_f64().unwrap()
}

fn query(sender: &str, receivers: &str, freeze_mlps: bool) -> Value {
    let mut args = vec![
        "--method",
        "path",
        "--sender",
        sender,
        "--receivers",
        receivers,
    ];
    if freeze_mlps {
        args.push("--freeze-mlps");
    }
    json(&[&args[..], &["--format", "json"]].concat())
}

const SEARCH: [&str; 8] = [
    "--top",
    "0",
    "--check-exact",
    "0",
    "--faithfulness-points",
    "0",
    "--format",
    "json",
];

#[test]
fn a_query_of_one_receiver_equals_the_search_and_exact_patching() {
    // MLPs frozen: the sender's only path is the direct one, exact edge patching.
    let exact = json(&[&["--method", "exact"][..], &SEARCH].concat());
    for (s, r) in [
        ("input", "a0.kv1<k>"),
        ("a0.h0", "a1.h1<q>"),
        ("m0", "logits"),
    ] {
        let direct = query(s, r, true);
        for metric in ["logit_diff", "logprob", "prob"] {
            let (a, b) = (effect(&direct, metric), edge_score(&exact, s, r, metric));
            assert!(
                (a - b).abs() < 1e-5,
                "{s} -> {r} {metric}: query {a} vs exact {b}"
            );
        }
    }
    // MLPs live: the same number as the path-patching search of every edge.
    let search = json(&[&["--method", "path"][..], &SEARCH].concat());
    for (s, r) in [("input", "a0.kv0<v>"), ("a0.h0", "m0"), ("m1", "logits")] {
        let q = query(s, r, false);
        let (a, b) = (
            effect(&q, "logit_diff"),
            edge_score(&search, s, r, "logit_diff"),
        );
        assert!((a - b).abs() < 1e-5, "{s} -> {r}: query {a} vs search {b}");
        assert!(a.abs() > 1e-3, "{s} -> {r} should matter: {a}");
        let norm = effect(&q, "logit_diff_normalized");
        let base = &q["baselines"];
        let span = base["clean"]["logit_diff"].as_f64().unwrap()
            - base["corrupted"]["logit_diff"].as_f64().unwrap();
        assert!(
            (norm - a / span).abs() < 1e-4,
            "normalised: {norm} vs {}",
            a / span
        );
    }
}

#[test]
fn a_receiver_set_is_patched_together() {
    // A KV head's keys and values read the input together: patched at
    // once, the change is not the sum of the two alone (the softmax over
    // the keys weighs the values).
    let k = effect(&query("input", "a0.kv1<k>", true), "logit_diff");
    let v = effect(&query("input", "a0.kv1<v>", true), "logit_diff");
    let both = query("input", "a0.kv1<k>,a0.kv1<v>", true);
    assert_eq!(
        both["receivers"],
        serde_json::json!(["a0.kv1<k>", "a0.kv1<v>"])
    );
    let kv = effect(&both, "logit_diff");
    assert!(
        kv.is_finite() && k.abs() > 1e-3 && v.abs() > 1e-3,
        "both {kv}, keys {k}, values {v}"
    );
    assert!(
        (kv - (k + v)).abs() > 1e-4,
        "both {kv} should not be the sum {k} + {v}"
    );
}

#[test]
fn bad_queries_are_refused_with_the_fix() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--method",
                "path",
                "--sender",
                "m9",
                "--receivers",
                "logits",
            ],
            "no sender \"m9\"",
        ),
        (
            &[
                "--method",
                "path",
                "--sender",
                "m0",
                "--receivers",
                "a3.h7<q>",
            ],
            "no receiver \"a3.h7<q>\"",
        ),
        (
            &["--sender", "m0", "--receivers", "logits"],
            "add --method path",
        ),
        (
            &[
                "--method",
                "path",
                "--sender",
                "m3",
                "--receivers",
                "a2.h0<k>",
            ],
            "not downstream of m3",
        ),
        (
            &[
                "--method",
                "path",
                "--sender",
                "m0",
                "--receivers",
                "logits,logits",
            ],
            "listed twice",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, err) = run(&demo(), args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.contains(want),
            "{args:?}: {err:?} should contain {want:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    let (ok, _, err) = circuit(&[
        "--method",
        "path",
        "--sender",
        "m0",
        "--receivers",
        "logits",
        "--format",
        "dot",
    ]);
    assert!(
        !ok && err.contains("--format table or --format json"),
        "{err}"
    );
}
