//! Sharded circuit searches: `circuit --shard K/N` parts merged by
//! `patchbench merge` equal the unsharded `circuit --format json` bit for
//! bit (without its `timing`), for every method that splits — exact and
//! path patching over edges and pairs, EAP, EAP-IG and AtP* over pairs —
//! on single pairs and datasets; bad sets of parts (missing, duplicated,
//! foreign, edited, mixed with sweep parts, of another model) are refused
//! with the file named.

mod common;
use common::cli::{ok, p, patchbench, refused, without_timing};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::cli::DEMO_PAIR as PAIR;

/// What every search here shares: every edge listed (the whole ranking is
/// compared), a few exact checks and a short curve.
const SMALL: [&str; 6] = [
    "--top",
    "0",
    "--check-exact",
    "4",
    "--faithfulness-points",
    "2",
];

/// `circuit` with `args` (inputs and options), unsharded, as JSON text.
fn full(args: &[&str]) -> String {
    let mut a = vec!["circuit"];
    a.extend_from_slice(args);
    a.extend(["--format", "json"]);
    String::from_utf8(ok(patchbench(&a), "unsharded circuit").stdout).unwrap()
}

/// The `n` part files of the same search, written in `dir`.
fn parts(dir: &Path, args: &[&str], n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|k| {
            let path = dir.join(format!("part-{k}-of-{n}.json"));
            let shard = format!("{k}/{n}");
            let mut a = vec!["circuit"];
            a.extend_from_slice(args);
            a.extend(["--shard", &shard, "--out", p(&path)]);
            ok(patchbench(&a), &format!("circuit --shard {shard}"));
            path
        })
        .collect()
}

fn merge(parts: &[PathBuf], extra: &[&str]) -> Output {
    let mut a = vec!["merge"];
    a.extend(parts.iter().map(|x| p(x)));
    a.extend_from_slice(extra);
    patchbench(&a)
}

/// Shards `ns` ways, merges each set and compares with the unsharded run;
/// returns the directory (the `n`-way parts are in `dir/n/`).
fn check(args: &[&str], ns: &[usize]) -> tempfile::TempDir {
    let want = without_timing(&full(args));
    let dir = tempfile::tempdir().unwrap();
    for &n in ns {
        let sub = dir.path().join(n.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let ps = parts(&sub, args, n);
        let merged = ok(merge(&ps, &[]), "merge");
        let got = without_timing(std::str::from_utf8(&merged.stdout).unwrap());
        assert!(
            got == want,
            "{args:?} in {n} shards differs from the unsharded search"
        );
    }
    dir
}

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["--model", "demo"];
    v.extend_from_slice(base);
    v.extend_from_slice(&SMALL);
    v.extend_from_slice(extra);
    v
}

/// The tiny Llama fixture (grouped-query attention: key/value receivers
/// are KV heads) with its pair and `extra` options: cheap enough to shard
/// every method 1, 2 and 3 ways.
fn llama(extra: &[&'static str]) -> Vec<String> {
    let model = common::fixture("llama-tiny");
    let mut v: Vec<String> = vec!["--model".into(), p(&model).into()];
    v.extend(LLAMA_PAIR.iter().map(|s| s.to_string()));
    v.extend(SMALL.iter().chain(extra).map(|s| s.to_string()));
    v
}

const LLAMA_PAIR: [&str; 8] = [
    "--clean",
    "When Mary and John went to the store, John gave a drink to",
    "--corrupted",
    "When John and Mary went to the store, John gave a drink to",
    "--answer",
    " Mary",
    "--wrong",
    " John",
];

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

/// The number of units in each part of the `n`-way split in `dir`.
fn units_per_part(dir: &Path, n: usize) -> Vec<Vec<Value>> {
    (1..=n)
        .map(|k| {
            let path = dir.join(format!("{n}/part-{k}-of-{n}.json"));
            let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            assert_eq!(v["manifest"]["shard"], serde_json::json!({"k": k, "n": n}));
            v["units"].as_array().unwrap().clone()
        })
        .collect()
}

/// On the embedded demo model: the split is over edges, so each of 3
/// parts holds some.
#[test]
fn exact_edge_patching_of_one_pair_merges_bit_for_bit() {
    let dir = check(&with(&PAIR, &["--method", "exact"]), &[1, 2, 3]);
    for (k, units) in units_per_part(dir.path(), 3).iter().enumerate() {
        assert!(!units.is_empty(), "part {}/3 is empty", k + 1);
    }
}

#[test]
fn every_method_on_one_pair_of_a_grouped_query_model_merges_bit_for_bit() {
    let want = full(&strs(&llama(&["--method", "exact"])));
    assert!(want.contains(".kv"), "kv receivers");
    for method in ["exact", "path", "eap", "eap-ig", "atp-star"] {
        let args = llama(&["--method", method, "--ig-steps", "2"]);
        // 1 and 2 parts: the demo's exact search, and datasets below.
        check(&strs(&args), &[3]);
    }
}

/// Three pairs of one length (circuits line pairs up by position).
fn dataset(dir: &Path) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    let (a, b) = (
        "When Mary and John went to the store, John gave a drink to",
        "When John and Mary went to the store, John gave a drink to",
    );
    let (c, d) = (
        "When Mary and John went to the store, Mary gave a drink to",
        "When John and Mary went to the store, Mary gave a drink to",
    );
    let rows = [
        (a, b, " Mary", " John"),
        (c, d, " John", " Mary"),
        (b, a, " John", " Mary"),
    ];
    let text: String = rows
        .iter()
        .map(|(c, k, a, w)| {
            serde_json::json!({"clean": c, "corrupted": k, "answer": a, "wrong": w}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_method_over_a_dataset_merges_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let model = common::fixture("llama-tiny");
    for method in ["exact", "path", "eap", "eap-ig", "atp-star"] {
        let mut args = vec!["--model", p(&model), "--dataset", p(&file)];
        args.extend(["--method", method, "--ig-steps", "2"]);
        args.extend_from_slice(&SMALL);
        let ns: &[usize] = if method == "eap" { &[1, 2, 3] } else { &[3] };
        let d = check(&args, ns);
        let parts = units_per_part(d.path(), 3);
        if matches!(method, "exact" | "path") {
            continue;
        }
        // The gradient estimates split by pairs: one run per part.
        for (k, units) in parts.iter().enumerate() {
            assert_eq!(units.len(), 1, "{method}: part {}/3", k + 1);
            assert_eq!(units[0]["run"], k);
        }
    }
}

#[test]
fn gaussian_noise_samples_and_the_noising_direction_merge_bit_for_bit() {
    for method in ["exact", "eap"] {
        let args = llama(&[
            "--method",
            method,
            "--corruption",
            "gaussian",
            "--samples",
            "3",
            "--direction",
            "noise",
        ]);
        check(&strs(&args), &[3]);
    }
}

#[test]
fn one_pair_of_a_gradient_method_is_one_unit_and_empty_shards_still_merge() {
    let dir = check(&with(&PAIR, &["--method", "eap"]), &[3]);
    let sizes: Vec<usize> = units_per_part(dir.path(), 3)
        .iter()
        .map(|u| u.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 1, "{sizes:?}");
}

#[test]
fn bad_circuit_part_sets_are_refused_naming_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let args = with(&PAIR, &["--method", "eap"]);
    let ps = parts(dir.path(), &args, 2);
    // A 2-way split has the one unit in one part; find it.
    let full_part = ps
        .iter()
        .find(|x| std::fs::read_to_string(x).unwrap().contains("\"index\": 0"))
        .unwrap()
        .clone();
    let empty_part = ps.iter().find(|x| **x != full_part).unwrap().clone();

    let e = refused(merge(std::slice::from_ref(&full_part), &[]));
    assert!(e.contains("missing") && e.contains("--shard K/2"), "{e}");

    let e = refused(merge(&[full_part.clone(), full_part.clone()], &[]));
    assert!(e.contains("both shard"), "{e}");

    // Another search's part (another metric): named, with the field.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut oargs = args.clone();
    oargs.extend(["--metric", "prob"]);
    let foreign = parts(&other, &oargs, 2);
    let e = refused(merge(&[full_part.clone(), foreign[0].clone()], &[]));
    assert!(
        e.contains("another circuit search") && e.contains("spec"),
        "{e}"
    );
    assert!(e.contains(p(&foreign[0])), "{e}");

    // An edited value is caught by the content digest.
    let text = std::fs::read_to_string(&full_part).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let s = v["units"][0]["scores"].as_str().unwrap().to_string();
    let flipped = if s.starts_with('0') { "1" } else { "0" }.to_string() + &s[1..];
    v["units"][0]["scores"] = Value::String(flipped);
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, v.to_string()).unwrap();
    let e = refused(merge(&[edited.clone(), empty_part.clone()], &[]));
    assert!(e.contains("edited.json") && e.contains("digest"), "{e}");

    // A sweep part beside circuit parts.
    let sweep_part = dir.path().join("sweep-part.json");
    let mut sa = vec!["sweep", "--model", "demo"];
    sa.extend_from_slice(&PAIR);
    sa.extend([
        "--target",
        "resid_pre",
        "--shard",
        "1/2",
        "--out",
        p(&sweep_part),
    ]);
    ok(patchbench(&sa), "sweep --shard");
    let e = refused(merge(&[full_part.clone(), sweep_part.clone()], &[]));
    assert!(
        e.contains("sweep part") && e.contains("circuit part"),
        "{e}"
    );
    let e = refused(merge(
        std::slice::from_ref(&sweep_part),
        &["--model", "demo"],
    ));
    assert!(e.contains("for circuit parts"), "{e}");

    // Finishing needs the parts' model.
    let good = [full_part.clone(), empty_part.clone()];
    let llama = common::fixture("llama-tiny");
    let e = refused(merge(&good, &["--model", p(&llama)]));
    assert!(e.contains("fingerprint") && e.contains("--model"), "{e}");
    // A session on another model (or with other prompts) is not theirs.
    let other_session = dir.path().join("s.yaml");
    let yaml = "version: 1\nmodel:\n  source: random:gpt2-tiny\nprompts:\n- clean: a\n  \
                answer: a\n  wrong: b\n";
    std::fs::write(&other_session, yaml).unwrap();
    let e = refused(merge(&good, &["--into", p(&other_session)]));
    assert!(e.contains("session on model") && e.contains("demo"), "{e}");
    assert_eq!(std::fs::read_to_string(&other_session).unwrap(), yaml);

    // --shard writes JSON parts: no --format beside it.
    let mut fa = vec!["circuit"];
    fa.extend_from_slice(&args);
    fa.extend(["--shard", "1/2", "--format", "table"]);
    let e = refused(patchbench(&fa));
    assert!(e.contains("--format") && e.contains("--shard"), "{e}");
    let mut sa = vec!["circuit"];
    sa.extend_from_slice(&args);
    sa.extend(["--shard", "3/2"]);
    let e = refused(patchbench(&sa));
    assert!(e.contains("K/N"), "{e}");
}
