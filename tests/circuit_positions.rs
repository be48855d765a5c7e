//! Position-aware edges (`CircuitOptions::positions`, `circuit
//! --positions`): an edge at one token position is the sender's direct
//! contribution at that position to the receiver's input there.
//!
//! - exact: one (edge, position) equals a hand edit (the sender's change
//!   added at that position only, through a full forward with a `HookSpec`
//!   edit), and an edge patched at every position at once equals the
//!   position-free edge;
//! - EAP and EAP-IG: the per-position scores sum over positions to the
//!   position-free score;
//! - faithfulness: keeping every (edge, position) unit recovers 1, keeping
//!   none 0, and keeping whole edges (every position) is the position-free
//!   curve;
//! - the CLI writes `src_pos`/`dst_pos` and refuses what has no
//!   position-aware form, naming the fix.
//!
//! On gpt2-tiny and llama-tiny (grouped-query attention).

mod circuit_support;
mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Tensor};

use circuit_support::{pair, prompt_runs};
use common::cli::{ok, p, patchbench, refused};
use patchbench::circuits::circuit::{faithfulness_curve, faithfulness_curve_at};
use patchbench::circuits::graph::{Graph, ReceiverId, SenderId};
use patchbench::circuits::path::path_patch_at;
use patchbench::circuits::runs::receiver_hook;
use patchbench::circuits::single::exact_edge_at;
use patchbench::circuits::{
    exact, patched, run_circuit, CircuitOptions, CircuitResult, Method, PathOptions, PathQuery,
};
use patchbench::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};
use patchbench::patching::metrics::LOGIT_DIFF;
use patchbench::patching::runs::RunPair;
use patchbench::patching::PreparedPair;

/// The preset's random model, built once for every test of this file
/// (random weights take seconds in a debug build).
fn model(preset: &str) -> &'static Transformer {
    static GPT2: OnceLock<Transformer> = OnceLock::new();
    static LLAMA: OnceLock<Transformer> = OnceLock::new();
    let cell = match preset {
        "gpt2-tiny" => &GPT2,
        "llama-tiny" => &LLAMA,
        _ => panic!("no fixture {preset}"),
    };
    cell.get_or_init(|| circuit_support::model(preset))
}

fn opts(method: Method, positions: bool) -> CircuitOptions {
    CircuitOptions {
        method,
        positions,
        ig_steps: 2,
        check_exact: 0,
        faithfulness_points: 0,
        ..Default::default()
    }
}

/// Scores by (sender, receiver, position).
fn by_unit(r: &CircuitResult) -> HashMap<(String, String, Option<usize>), f32> {
    r.edges
        .iter()
        .map(|e| {
            assert_eq!(e.src_pos, e.dst_pos);
            let k = (e.sender.clone(), e.receiver.clone(), e.dst_pos);
            (k, e.scores[LOGIT_DIFF])
        })
        .collect()
}

/// `sender`'s output in a run's cache, `[pos, d_model]`.
fn sender_out(g: &Graph, get: impl Fn(HookPoint) -> Tensor, s: SenderId) -> Tensor {
    use patchbench::circuits::graph::Sender;
    match g.sender(s) {
        Sender::Input => get(HookPoint::ResidPre(0)).squeeze(0).unwrap(),
        Sender::Head { layer, head } => get(HookPoint::AttnResult(layer))
            .squeeze(0)
            .unwrap()
            .narrow(1, head, 1)
            .unwrap()
            .squeeze(1)
            .unwrap(),
        Sender::Mlp { layer } => get(HookPoint::MlpOut(layer)).squeeze(0).unwrap(),
    }
}

/// The base run's logit difference with `Δ_s` added to `r`'s input at
/// position `at` only: a full forward from the tokens with one `Add` edit.
fn hand_edit(
    m: &Transformer,
    g: &Graph,
    run: &RunPair,
    (s, r): (SenderId, ReceiverId),
    at: usize,
) -> f32 {
    let base = sender_out(g, |h| run.base.get(h).unwrap().clone(), s);
    let src = sender_out(g, |h| run.source[&h].clone(), s);
    let t = base.dim(0).unwrap();
    let d = base.dim(1).unwrap();
    let delta = (src - base).unwrap().narrow(0, at, 1).unwrap(); // [1, d]
    let (hook, head) = receiver_hook(g, r);
    let mut data = vec![0f32; t * head.map_or(1, |(_, n)| n) * d];
    let row: Vec<f32> = delta.flatten_all().unwrap().to_vec1().unwrap();
    let off = match head {
        Some((h, n)) => (at * n + h) * d,
        None => at * d,
    };
    data[off..off + d].copy_from_slice(&row);
    let shape: Vec<usize> = match head {
        Some((_, n)) => vec![1, t, n, d],
        None => vec![1, t, d],
    };
    let edit = Tensor::from_vec(data, shape, m.device()).unwrap();
    let spec = HookSpec::new().intervene(hook, Edit::Add(edit));
    let tokens = Tensor::new(run.base_tokens.as_slice(), m.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let fw = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let out = m.forward(Some(&tokens), &spec, &fw).unwrap();
    let logits: Vec<f32> = out
        .logits
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(logits.len(), m.cfg.d_vocab);
    let edited = logits[run.answer as usize] - logits[run.wrong as usize];
    edited - run.base_metrics.logit_diff()
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// The receiver kind of a name: `q`, `k`, `v`, `mlp` or `logits`.
fn kind(receiver: &str) -> &str {
    match receiver.find('<') {
        Some(i) => &receiver[i + 1..i + 2],
        None if receiver == "logits" => "logits",
        None => "mlp",
    }
}

/// The exact check of a position-aware search (its top units by EAP,
/// patched exactly at their positions) equals the hand edit at that
/// position, for the top checked unit of every receiver kind.
fn check_exact_units(preset: &str) {
    let m = model(preset);
    let g = Graph::new(&m.cfg);
    let o = CircuitOptions {
        check_exact: 60,
        ..opts(Method::Eap, true)
    };
    let r = run_circuit(m, &[pair()], &o).unwrap();
    assert!(r.positions);
    assert_eq!(r.n_edges, g.edges().len() * pair().n_pos());
    let runs = prompt_runs(m, &g);
    let mut seen = Vec::new();
    let mut moved = 0;
    for e in r.edges.iter().filter(|e| e.exact.is_some()) {
        if seen.contains(&kind(&e.receiver)) {
            continue;
        }
        seen.push(kind(&e.receiver));
        let unit = (
            g.find_sender(&e.sender).unwrap(),
            g.find_receiver(&e.receiver).unwrap(),
        );
        let at = e.dst_pos.unwrap();
        let want = hand_edit(m, &g, &runs.runs[0], unit, at);
        let got = e.exact.unwrap()[LOGIT_DIFF];
        assert!(
            close(got, want, 1e-5),
            "{preset} {} -> {} @{at}: search {got} vs hand edit {want}",
            e.sender,
            e.receiver
        );
        moved += usize::from(want.abs() > 1e-3);
        if seen.len() == 1 {
            // The workbench's drill-down of the unit: the same change.
            let names = (e.sender.as_str(), e.receiver.as_str());
            let one = exact_edge_at(m, &[pair()], &o, names, Some(at)).unwrap();
            assert!(close(one[LOGIT_DIFF], want, 1e-5), "{preset} drill-down");
        }
    }
    assert!(seen.len() >= 3, "{preset}: receiver kinds checked {seen:?}");
    assert!(moved >= 2, "{preset}: the checked units barely move");
}

#[test]
fn exact_unit_equals_a_hand_edit_at_that_position() {
    check_exact_units("gpt2-tiny");
    check_exact_units("llama-tiny");
}

/// An edge patched at every position at once (a position-aware weight row
/// with every position set) is exact position-free edge patching.
#[test]
fn every_position_at_once_is_the_position_free_edge() {
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let m = model(preset);
        let g = Graph::new(&m.cfg);
        let runs = prompt_runs(m, &g);
        let run = &runs.runs[0];
        let t = run.base_tokens.len();
        let edges: Vec<(SenderId, ReceiverId)> = g.edges().into_iter().step_by(9).collect();
        let free = exact::exact_edges(m, &g, run, &edges, 16).unwrap();
        let weights: Vec<Vec<f32>> = edges
            .iter()
            .map(|&(s, r)| {
                let mut w = vec![0f32; g.n_senders() * g.n_receivers() * t];
                w[g.idx(s, r) * t..(g.idx(s, r) + 1) * t].fill(1.0);
                w
            })
            .collect();
        let all = patched::patched_runs_at(m, &g, run, &weights, Some(t)).unwrap();
        for (i, (a, b)) in free.iter().zip(&all).enumerate() {
            let (x, y) = (a.logit_diff(), b.logit_diff());
            assert!(close(x, y, 1e-5), "{preset} edge {i}: {x} vs {y}");
        }
    }
}

/// EAP's and EAP-IG's score is a sum over positions; the position-aware
/// scores are its terms.
#[test]
fn estimates_per_position_sum_to_the_position_free_score() {
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let m = model(preset);
        // EAP-IG goes through the same per-position product: one model.
        let methods: &[Method] = match preset {
            "gpt2-tiny" => &[Method::Eap, Method::EapIg],
            _ => &[Method::Eap],
        };
        for &method in methods {
            let free = run_circuit(m, &[pair()], &opts(method, false)).unwrap();
            let at = run_circuit(m, &[pair()], &opts(method, true)).unwrap();
            assert_eq!(at.n_edges, free.n_edges * pair().n_pos());
            let mut sums: HashMap<(String, String), (f32, usize)> = HashMap::new();
            for ((s, r, p), v) in by_unit(&at) {
                assert!(p.is_some());
                let e = sums.entry((s, r)).or_default();
                e.0 += v;
                e.1 += 1;
            }
            let mut nonzero = 0;
            for e in &free.edges {
                let (sum, n) = sums[&(e.sender.clone(), e.receiver.clone())];
                assert_eq!(n, pair().n_pos());
                let want = e.scores[LOGIT_DIFF];
                assert!(
                    close(sum, want, 1e-5),
                    "{preset} {method:?} {} -> {}: Σ_p {sum} vs {want}",
                    e.sender,
                    e.receiver
                );
                nonzero += usize::from(want.abs() > 1e-4);
            }
            assert!(nonzero > free.edges.len() / 4, "{preset}: scores vanish");
        }
    }
}

/// AtP* per position: the plain estimate's terms sum to the
/// position-free plain estimate; edges without the QK fix (values, MLPs,
/// logits) keep the plain value at each position, and a query or key
/// edge at a position the corruption leaves alone (before the changed
/// token, where `Δ` is zero) changes nothing.
#[test]
fn atp_star_per_position_splits_the_plain_estimate_and_fixes_q_k_units() {
    let m = model("llama-tiny");
    let o = |positions| CircuitOptions {
        graddrop: true,
        ..opts(Method::AtpStar, positions)
    };
    let free = run_circuit(m, &[pair()], &o(false)).unwrap();
    let at = run_circuit(m, &[pair()], &o(true)).unwrap();
    let mut sums: HashMap<(String, String), f32> = HashMap::new();
    let mut fixed_moved = 0;
    for e in &at.edges {
        let (plain, fixed) = (e.plain.unwrap()[LOGIT_DIFF], e.scores[LOGIT_DIFF]);
        *sums
            .entry((e.sender.clone(), e.receiver.clone()))
            .or_default() += plain;
        let p = e.dst_pos.unwrap();
        let qk = e.receiver.ends_with("<q>") || e.receiver.ends_with("<k>");
        if !qk {
            assert_eq!(plain, fixed, "{} -> {} @{p}", e.sender, e.receiver);
        } else if p < 3 {
            assert!(
                fixed.abs() < 1e-6,
                "{} -> {} @{p}: {fixed}",
                e.sender,
                e.receiver
            );
        } else {
            fixed_moved += usize::from((fixed - plain).abs() > 1e-6);
        }
        let g = e.graddrop.unwrap()[LOGIT_DIFF];
        assert!(g.is_finite() && g >= 0.0);
    }
    assert!(fixed_moved > 0, "the QK fix changes some q/k units");
    for e in &free.edges {
        let sum = sums[&(e.sender.clone(), e.receiver.clone())];
        let want = e.plain.unwrap()[LOGIT_DIFF];
        assert!(
            close(sum, want, 1e-5),
            "{} -> {}: {sum} vs {want}",
            e.sender,
            e.receiver
        );
    }
}

/// The curve's ends: no unit kept is the corrupted run, every unit the
/// clean run; and keeping whole edges (all their positions) traces the
/// position-free curve.
#[test]
fn faithfulness_over_units_spans_the_baselines_and_matches_whole_edges() {
    let m = model("llama-tiny");
    let g = Graph::new(&m.cfg);
    let o = CircuitOptions {
        faithfulness_points: 3,
        ..opts(Method::Eap, true)
    };
    let r = run_circuit(m, &[pair()], &o).unwrap();
    let (first, last) = (&r.faithfulness[0], r.faithfulness.last().unwrap());
    assert_eq!((first.k, last.k), (0, r.n_edges));
    assert!(first.recovered.abs() < 1e-4, "empty: {}", first.recovered);
    assert!(
        (last.recovered - 1.0).abs() < 1e-4,
        "full: {}",
        last.recovered
    );

    let t = pair().n_pos();
    let ranked: Vec<(SenderId, ReceiverId)> = g.edges().into_iter().rev().collect();
    let units: Vec<(SenderId, ReceiverId)> = ranked
        .iter()
        .flat_map(|&e| std::iter::repeat_n(e, t))
        .collect();
    let at: Vec<usize> = ranked.iter().flat_map(|_| 0..t).collect();
    let ks = [1, 7, 40];
    let free = faithfulness_curve(m, &g, &[pair()], &o, &ranked, &ks).unwrap();
    let ks_t: Vec<usize> = ks.iter().map(|k| k * t).collect();
    let whole = faithfulness_curve_at(m, &g, &[pair()], &o, (&units, &at), &ks_t).unwrap();
    for (a, b) in free.iter().zip(&whole) {
        assert!(
            close(a.recovered, b.recovered, 1e-5),
            "k {}: {} vs {}",
            a.k,
            a.recovered,
            b.recovered
        );
    }
}

/// Path patching at a position with MLPs frozen is exact edge patching at
/// that position (each receiver reads `resid + Δ_u ⊙ 1[p]`); with MLPs
/// recomputed it differs only through the MLPs between them.
#[test]
fn path_patching_at_a_position_with_frozen_mlps_is_exact_patching_there() {
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let m = model(preset);
        let g = Graph::new(&m.cfg);
        let runs = prompt_runs(m, &g);
        let run = &runs.runs[0];
        let (units, at): (Vec<(SenderId, ReceiverId)>, Vec<usize>) = g
            .edges()
            .into_iter()
            .step_by(23)
            .flat_map(|e| (3..pair().n_pos()).map(move |p| (e, p)))
            .unzip();
        let queries: Vec<PathQuery> = units
            .iter()
            .map(|&(sender, r)| PathQuery {
                sender,
                receivers: vec![r],
            })
            .collect();
        let frozen = PathOptions {
            freeze_mlps: true,
            ..Default::default()
        };
        let path = path_patch_at(m, &g, run, (&queries, Some(&at)), &frozen, 16).unwrap();
        let ex = exact::exact_edges_at(m, &g, run, (&units, Some(&at)), 16).unwrap();
        let mut moved = 0;
        for (i, (a, b)) in path.iter().zip(&ex).enumerate() {
            let (x, y) = (a.logit_diff(), b.logit_diff());
            assert!(
                close(x, y, 1e-5),
                "{preset} unit {i} @{}: {x} vs {y}",
                at[i]
            );
            moved += usize::from((y - run.base_metrics.logit_diff()).abs() > 1e-4);
        }
        assert!(moved >= 3, "{preset}: only {moved} units move");
    }
}

#[test]
fn pairs_of_several_lengths_are_refused() {
    let m = model("gpt2-tiny");
    let longer = PreparedPair {
        clean: vec![8, 3, 17, 9, 250, 4, 11, 60, 2],
        corrupted: vec![8, 3, 17, 9, 40, 4, 11, 60, 2],
        ..pair()
    };
    let msg = run_circuit(m, &[pair(), longer], &opts(Method::Eap, true))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("7 tokens: pair 0") && msg.contains("9 tokens: pair 1"),
        "{msg}"
    );
    assert!(msg.contains("one length"), "{msg}");
}

use common::cli::DEMO_PAIR as PAIR;

#[test]
fn cli_writes_unit_positions_and_refuses_with_the_fix() {
    let mut args = vec!["circuit", "--model", "demo", "--positions"];
    args.extend(PAIR);
    args.extend(["--top", "12", "--check-exact", "3"]);
    args.extend(["--faithfulness-points", "2", "--format", "json"]);
    let out = ok(patchbench(&args), "circuit --positions");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["positions"], true);
    let n_tok = v["clean_tokens"]["ids"].as_array().unwrap().len();
    let edges = v["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 12);
    for e in edges {
        let (s, d) = (
            e["src_pos"].as_u64().unwrap(),
            e["dst_pos"].as_u64().unwrap(),
        );
        assert_eq!(s, d);
        assert!((s as usize) < n_tok, "{e}");
    }
    assert!(edges[0]["exact"].is_object());
    // The table names the position and its token.
    let mut table = args.clone();
    table.truncate(table.len() - 2);
    let out = ok(patchbench(&table), "circuit --positions table");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(edge, position) units"), "{text}");
    assert!(text.contains("faithfulness (units kept"), "{text}");
    let mut csv = table.clone();
    csv.extend(["--format", "csv"]);
    let out = ok(patchbench(&csv), "circuit --positions csv");
    let csv_text = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv_text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("rank,sender,receiver,src_pos,dst_pos,"),
        "{csv_text}"
    );
    for row in lines {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[3], f[4], "{row}");
        assert!(f[3].parse::<usize>().unwrap() < n_tok, "{row}");
    }
    assert!(text.contains(" @"), "{text}");

    let mut path = vec!["circuit", "--model", "demo", "--positions"];
    path.extend(PAIR);
    path.extend(["--method", "path", "--sender", "a0.h0", "--receivers", "m1"]);
    let err = refused(patchbench(&path));
    assert!(err.contains("drop --positions"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    let line = |c: &str, k: &str| {
        serde_json::json!({"clean": c, "corrupted": k, "answer": "mary", "wrong": "john"})
            .to_string()
    };
    let text = format!(
        "{}\n{}\n",
        line("john gave a drink to", "mary gave a drink to"),
        line("then john gave a drink to", "then mary gave a drink to")
    );
    std::fs::write(&file, text).unwrap();
    let err = refused(patchbench(&[
        "circuit",
        "--model",
        "demo",
        "--positions",
        "--dataset",
        p(&file),
    ]));
    assert!(
        err.contains("one token length") && err.contains("pair 0") && err.contains("pair 1"),
        "{err}"
    );
}

/// A position-aware search over labelled pairs of one length names each
/// edge's position by its label (`pos_label`); split over the pairs and
/// merged it equals the unsharded search (the part carries `positions`
/// and the labels), and the SVG names each drawn edge's position.
#[test]
fn position_aware_shards_merge_to_the_unsharded_search() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.jsonl");
    let line = |c: &str, k: &str| {
        serde_json::json!({"clean": c, "corrupted": k, "answer": "mary", "wrong": "john",
            "labels": {"S": 0, "END": -1}})
        .to_string()
    };
    let text = format!(
        "{}\n{}\n",
        line("john gave a drink to", "mary gave a drink to"),
        line("john gave a book to", "mary gave a book to")
    );
    std::fs::write(&file, text).unwrap();
    let mut args = vec!["circuit", "--model", "demo", "--positions"];
    args.extend(["--dataset", p(&file), "--method", "eap", "--top", "0"]);
    args.extend(["--check-exact", "2", "--faithfulness-points", "2"]);
    let mut full = args.clone();
    full.extend(["--format", "json"]);
    let want = common::cli::without_timing(
        &String::from_utf8(ok(patchbench(&full), "unsharded").stdout).unwrap(),
    );
    assert_eq!(want["positions"], true);
    let n_tok = want["clean_tokens"]["ids"].as_array().unwrap().len() as u64;
    let edges = want["edges"].as_array().unwrap();
    assert_eq!(edges.len() as u64, want["n_edges"].as_u64().unwrap());
    for e in edges {
        let at = e["dst_pos"].as_u64().unwrap();
        let label = match at {
            0 => serde_json::json!("S"),
            p if p == n_tok - 1 => serde_json::json!("END"),
            _ => serde_json::Value::Null,
        };
        assert_eq!(e["pos_label"], label, "{e}");
    }
    let parts: Vec<std::path::PathBuf> = (1..=2)
        .map(|k| {
            let path = dir.path().join(format!("part-{k}.json"));
            let shard = format!("{k}/2");
            let mut a = args.clone();
            a.extend(["--shard", &shard, "--out", p(&path)]);
            ok(patchbench(&a), "circuit --positions --shard");
            path
        })
        .collect();
    let part = std::fs::read_to_string(&parts[0]).unwrap();
    assert!(part.contains("\"positions\": true") || part.contains("\"positions\":true"));
    let out = ok(
        patchbench(&["merge", p(&parts[0]), p(&parts[1]), "--format", "json"]),
        "merge",
    );
    let got = common::cli::without_timing(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(got, want, "merged parts equal the unsharded search");

    let mut svg = args.clone();
    let top = svg.iter().position(|a| *a == "--top").unwrap();
    svg[top + 1] = "6";
    let out = ok(patchbench(&svg), "circuit --positions table");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(&format!("@{} END '", n_tok - 1)), "{table}");
    svg.extend(["--format", "svg"]);
    let out = ok(patchbench(&svg), "circuit --positions --format svg");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" @") && text.contains("<title>#1 "), "{text}");
}
