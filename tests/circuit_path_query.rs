//! `patchbench circuit --method path --sender S --receivers R,...`: one
//! path-patching query, checked against the edge search on the demo model's
//! induction pair.

use std::process::Command;

use serde_json::Value;

const CLEAN: &str =
    "red cat tree bob tea fire rome lima milk oslo gold star river bob tea fire rome";
const CORRUPTED: &str =
    "red cat tree bob tea fire rome salt milk oslo gold star river bob tea fire rome";

fn circuit(extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args([
            "circuit",
            "--model",
            "demo",
            "--clean",
            CLEAN,
            "--corrupted",
            CORRUPTED,
        ])
        .args(["--answer", "lima", "--wrong", "salt"])
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

#[test]
fn a_query_of_one_receiver_equals_the_search_and_exact_patching() {
    let search_args = [
        "--top",
        "0",
        "--check-exact",
        "0",
        "--faithfulness-points",
        "0",
    ];
    let fmt = ["--format", "json"];
    // MLPs frozen: the sender's only path is the direct one, exact edge patching.
    let exact = json(&[&["--method", "exact"][..], &search_args, &fmt].concat());
    let direct = json(&[
        "--method",
        "path",
        "--sender",
        "m0",
        "--receivers",
        "a3.h0<k>",
        "--freeze-mlps",
        "--format",
        "json",
    ]);
    let want = edge_score(&exact, "m0", "a3.h0<k>", "logit_diff");
    assert!(
        want > 10.0,
        "the demo's key edge into the induction head: {want}"
    );
    for metric in ["logit_diff", "logprob", "prob"] {
        let (a, b) = (
            effect(&direct, metric),
            edge_score(&exact, "m0", "a3.h0<k>", metric),
        );
        assert!((a - b).abs() < 1e-4, "{metric}: query {a} vs exact {b}");
    }
    // MLPs live: the same number as the path-patching search of every edge.
    let search = json(&[&["--method", "path"][..], &search_args, &fmt].concat());
    for (s, r) in [
        ("a2.h1", "a3.h0<k>"),
        ("m0", "a2.h1<k>"),
        ("a3.h0", "logits"),
    ] {
        let q = json(&[
            "--method",
            "path",
            "--sender",
            s,
            "--receivers",
            r,
            "--format",
            "json",
        ]);
        let (a, b) = (
            effect(&q, "logit_diff"),
            edge_score(&search, s, r, "logit_diff"),
        );
        assert!((a - b).abs() < 1e-4, "{s} -> {r}: query {a} vs search {b}");
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
    // The keys and the values of the induction head read MLP 0 together:
    // patched at once, the change is not the sum of the two alone (the
    // head's softmax couples them), and it is what the JSON says it is.
    let one = |r: &str| {
        let q = json(&[
            "--method",
            "path",
            "--sender",
            "m0",
            "--receivers",
            r,
            "--freeze-mlps",
            "--format",
            "json",
        ]);
        effect(&q, "logit_diff")
    };
    let (k, v) = (one("a3.h0<k>"), one("a3.h0<v>"));
    let both = json(&[
        "--method",
        "path",
        "--sender",
        "m0",
        "--receivers",
        "a3.h0<k>,a3.h0<v>",
        "--freeze-mlps",
        "--format",
        "json",
    ]);
    assert_eq!(
        both["receivers"],
        serde_json::json!(["a3.h0<k>", "a3.h0<v>"])
    );
    let kv = effect(&both, "logit_diff");
    assert!(
        kv.is_finite() && kv > k.max(v) - 1e-3,
        "both {kv}, keys {k}, values {v}"
    );
    assert!(
        (kv - (k + v)).abs() > 1e-3,
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
        let (ok, _, err) = circuit(args);
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
