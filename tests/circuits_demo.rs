//! The demo model's circuits, found by exact edge patching, and how well
//! each estimator (EAP, EAP-IG, AtP*) ranks its edges: Spearman correlation
//! of |score| with |exact| over every edge, overlap of the top 10, sign
//! agreement on exact's top 10 (README "Circuits in the demo model"). Run
//! with `--nocapture` to see the edges and the agreement numbers. And
//! `circuit --dataset`: the scores over a file of pairs are the means of
//! the pairs' own.

use candle_core::Device;
use patchbench::circuits::{run_circuit, CircuitOptions, CircuitResult, EdgeScore, Method};
use patchbench::demo::circuits;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{prepare_pairs, PreparedPair, PromptPair};

fn demo() -> LoadedModel {
    let opts = LoadOptions {
        device: Device::Cpu,
        ..Default::default()
    };
    LoadedModel::load("demo", &opts).unwrap()
}

fn prepared(m: &LoadedModel, pairs: &[PromptPair]) -> Vec<PreparedPair> {
    prepare_pairs(&m.tokenizer, pairs, None).unwrap()
}

fn circuit(m: &LoadedModel, pairs: &[PreparedPair], method: Method) -> CircuitResult {
    let opts = CircuitOptions {
        method,
        check_exact: 0,
        faithfulness_points: if method == Method::Exact { 8 } else { 0 },
        ..Default::default()
    };
    run_circuit(&m.model, pairs, &opts).unwrap()
}

fn key(e: &EdgeScore) -> String {
    format!("{}->{}", e.sender, e.receiver)
}

/// (exact, estimate) logit-difference scores, in the exact result's order.
fn aligned(exact: &CircuitResult, other: &CircuitResult) -> Vec<(f32, f32)> {
    let map: std::collections::HashMap<String, f32> = other
        .edges
        .iter()
        .map(|e| (key(e), e.scores.logit_diff()))
        .collect();
    exact
        .edges
        .iter()
        .map(|e| (e.scores.logit_diff(), map[&key(e)]))
        .collect()
}

fn ranks(v: &[f32]) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0f32; v.len()];
    for (k, &i) in idx.iter().enumerate() {
        r[i] = k as f32;
    }
    r
}

fn spearman(a: &[f32], b: &[f32]) -> f32 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f32;
    let (ma, mb) = (ra.iter().sum::<f32>() / n, rb.iter().sum::<f32>() / n);
    let cov: f32 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Spearman of |scores|, overlap of the top `k` by |score|, sign agreement
/// on exact's top `k`.
fn agreement(pairs: &[(f32, f32)], k: usize) -> (f32, usize, usize) {
    let a: Vec<f32> = pairs.iter().map(|p| p.0.abs()).collect();
    let b: Vec<f32> = pairs.iter().map(|p| p.1.abs()).collect();
    let top = |v: &[f32]| {
        let mut i: Vec<usize> = (0..v.len()).collect();
        i.sort_by(|&x, &y| v[y].total_cmp(&v[x]));
        i.truncate(k);
        i
    };
    let (ta, tb) = (top(&a), top(&b));
    let overlap = ta.iter().filter(|i| tb.contains(i)).count();
    let signs = ta
        .iter()
        .filter(|&&i| pairs[i].0.signum() == pairs[i].1.signum())
        .count();
    (spearman(&a, &b), overlap, signs)
}

/// The exact circuit and each estimator's (Spearman, top-10 overlap, signs).
fn report(
    task: &str,
    m: &LoadedModel,
    pairs: &[PreparedPair],
    log: &mut String,
) -> (CircuitResult, Vec<(f32, usize, usize)>) {
    use std::fmt::Write;
    let exact = circuit(m, pairs, Method::Exact);
    let (c, k) = (&exact.baselines.clean, &exact.baselines.corrupted);
    writeln!(
        log,
        "{task}: {} pairs, {} edges; clean ld {:.3}, corrupted ld {:.3}",
        pairs.len(),
        exact.n_edges,
        c.logit_diff(),
        k.logit_diff()
    )
    .unwrap();
    for e in exact.edges.iter().take(12) {
        let (s, r, v) = (&e.sender, &e.receiver, e.scores.logit_diff());
        writeln!(log, "  {s:>8} -> {r:<10} {v:+.4}").unwrap();
    }
    for p in &exact.faithfulness {
        writeln!(log, "  faithfulness k = {:>4}: {:.3}", p.k, p.recovered).unwrap();
    }
    let (a, b) = (exact.edges_for_80, exact.edges_for_90);
    writeln!(log, "  80%: {a:?} edges, 90%: {b:?} edges").unwrap();
    let mut out = Vec::new();
    for method in [Method::Eap, Method::EapIg, Method::AtpStar] {
        let est = circuit(m, pairs, method);
        let (rho, overlap, signs) = agreement(&aligned(&exact, &est), 10);
        writeln!(
            log,
            "  {}: Spearman {rho:.3} (|score|), top-10 overlap {overlap}/10, sign agreement {signs}/10",
            method.name()
        )
        .unwrap();
        out.push((rho, overlap, signs));
    }
    (exact, out)
}

/// What every estimator must do on the demo's circuits: rank the edges
/// much as exact patching does, agree on most of the top 10 and on the
/// signs of the edges that matter.
fn check_estimators(task: &str, est: &[(f32, usize, usize)]) {
    for (name, &(rho, overlap, signs)) in ["eap", "eap-ig", "atp-star"].iter().zip(est) {
        assert!(rho >= 0.8, "{task} {name}: Spearman {rho}");
        assert!(overlap >= 6, "{task} {name}: top-10 overlap {overlap}");
        assert!(signs >= 8, "{task} {name}: sign agreement {signs}");
    }
}

/// The first grid k whose circuit recovers 90% is a small part of the graph.
fn check_faithful(task: &str, exact: &CircuitResult, most: usize) {
    let k = exact.edges_for_90.unwrap_or(usize::MAX);
    assert!(
        k * most <= exact.n_edges,
        "{task}: 90% needs {k} of {} edges",
        exact.n_edges
    );
}

#[test]
fn demo_induction_circuit_by_exact_edge_patching() {
    let m = demo();
    let ind = prepared(&m, &circuits::induction_key_pairs(8, 3, 4, 1));
    let mut log = String::new();
    let (exact, est) = report("induction (earlier word changed)", &m, &ind, &mut log);
    let into_keys: Vec<&EdgeScore> = exact
        .edges
        .iter()
        .filter(|e| e.receiver == "a3.h0<k>")
        .collect();
    log.push_str("  edges into L3H0's keys:\n");
    for e in into_keys.iter().take(6) {
        log.push_str(&format!(
            "    {:>8} {:+.4}\n",
            e.sender,
            e.scores.logit_diff()
        ));
    }
    println!("{log}");
    // The induction head writes the answer: among exact's top 6 edges.
    let top: Vec<String> = exact.edges.iter().take(6).map(key).collect();
    assert!(
        top.iter().any(|k| k.starts_with("a3.h0->")),
        "L3H0 does not write the answer: {top:?}"
    );
    // The previous-token signal reaches L3H0's keys through MLP 0, not
    // straight from L0H0.
    assert_eq!(into_keys[0].sender, "m0", "{log}");
    let direct = into_keys.iter().find(|e| e.sender == "a0.h0").unwrap();
    assert!(into_keys[0].scores.logit_diff().abs() > 2.0 * direct.scores.logit_diff().abs());
    check_faithful("induction", &exact, 5);
    check_estimators("induction", &est);
}

#[test]
fn demo_ioi_circuit_by_exact_edge_patching() {
    let m = demo();
    let ioi = prepared(&m, &circuits::ioi_pairs(0, 2, 3));
    let mut log = String::new();
    let (exact, est) = report("IOI", &m, &ioi, &mut log);
    println!("{log}");
    check_faithful("IOI", &exact, 10);
    check_estimators("IOI", &est);
}

/// `circuit --dataset FILE`: one JSON whose scores are the means of each
/// pair's own, with the pair count and the dataset's digest and ids.
#[test]
fn circuit_over_a_dataset_averages_the_pairs() {
    let m = demo();
    let pairs = circuits::ioi_pairs(1, 3, 5);
    let dir = std::env::temp_dir().join(format!("pb-circuit-ds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ioi.jsonl");
    let lines: Vec<String> = pairs
        .iter()
        .map(|p| {
            serde_json::json!({"clean": p.clean, "corrupted": p.corrupted, "answer": p.answer, "wrong": p.wrong})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["circuit", "--model", "demo", "--dataset"])
        .arg(&file)
        .args(["--method", "eap", "--top", "0", "--check-exact", "3"])
        .args(["--faithfulness-points", "2", "--format", "json"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_pairs"], 3);
    assert_eq!(v["dataset"]["ids"].as_array().unwrap().len(), 3);
    let edges = v["edges"].as_array().unwrap();
    let checked: Vec<_> = edges.iter().filter(|e| e.get("error").is_some()).collect();
    assert_eq!(checked.len(), 3, "the checked edges carry their error");
    for e in &checked {
        let (s, x, err) = (
            &e["scores"]["logit_diff"],
            &e["exact"]["logit_diff"],
            &e["error"]["logit_diff"],
        );
        let d = s.as_f64().unwrap() - x.as_f64().unwrap() - err.as_f64().unwrap();
        assert!(d.abs() < 1e-4, "error is score - exact: {e}");
    }
    let curve = v["faithfulness"].as_array().unwrap();
    let rec = |p: &serde_json::Value| p["recovered"].as_f64().unwrap();
    assert!(rec(&curve[0]).abs() < 1e-3 && (rec(curve.last().unwrap()) - 1.0).abs() < 1e-3);
    // The mean of each pair's own EAP scores.
    let opts = CircuitOptions {
        method: Method::Eap,
        check_exact: 0,
        faithfulness_points: 0,
        ..Default::default()
    };
    let each: Vec<CircuitResult> = prepared(&m, &pairs)
        .chunks(1)
        .map(|p| run_circuit(&m.model, p, &opts).unwrap())
        .collect();
    let mut worst = 0f64;
    for e in edges {
        let k = format!(
            "{}->{}",
            e["sender"].as_str().unwrap(),
            e["receiver"].as_str().unwrap()
        );
        let mean = each
            .iter()
            .map(|r| {
                r.edges
                    .iter()
                    .find(|x| key(x) == k)
                    .unwrap()
                    .scores
                    .logit_diff() as f64
            })
            .sum::<f64>()
            / 3.0;
        worst = worst.max((e["scores"]["logit_diff"].as_f64().unwrap() - mean).abs());
    }
    assert!(
        worst < 1e-4,
        "dataset scores differ from the pairs' mean by {worst}"
    );
}
