//! Sharded sweeps: `sweep --shard K/N` parts merged by `patchbench merge`
//! equal the unsharded run bit for bit (JSON without its timing, CSV byte
//! for byte), for every target family and corruption, for single pairs and
//! for datasets with and without position labels (statistics included);
//! bad sets of parts (missing, duplicated, foreign, of another model,
//! damaged) are refused with the file named.

mod common;
use common::cli::{ok, p, patchbench, refused};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";

/// `patchbench` on one compute thread, as a Slurm task with one CPU runs.
fn patchbench_one_thread(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// `sweep` on the tiny Llama fixture (grouped-query attention, so
/// `heads_every` has absent cells) with `extra` arguments.
fn sweep(target: &str, extra: &[&str]) -> Output {
    sweep_on(patchbench, target, extra)
}

fn sweep_on(run: fn(&[&str]) -> Output, target: &str, extra: &[&str]) -> Output {
    let model = common::fixture("llama-tiny");
    let mut args = vec![
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--clean",
        CLEAN,
        "--corrupted",
        CORRUPTED,
        "--answer",
        " Mary",
        "--wrong",
        " John",
        "--target",
        target,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The JSON output without its `timing`, which no two runs share.
fn without_timing(text: &str) -> String {
    let mut v: Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v.to_string()
}

/// Writes the unsharded JSON and `n` parts of `target`, returning the
/// unsharded output and the part paths. Shard 2 runs on one thread: the
/// bits must not depend on the CPUs a task gets.
fn full_and_parts(dir: &Path, target: &str, extra: &[&str], n: usize) -> (String, Vec<PathBuf>) {
    let full = dir.join("full.json");
    let mut a = extra.to_vec();
    a.extend(["--out", p(&full)]);
    ok(sweep(target, &a), "unsharded sweep");
    assert!(
        !dir.join("full.json.ckpt").exists(),
        "the checkpoint is removed once the output is written"
    );
    let parts: Vec<PathBuf> = (1..=n)
        .map(|k| {
            let part = dir.join(format!("part-{k}.json"));
            let shard = format!("{k}/{n}");
            let mut a = extra.to_vec();
            a.extend(["--shard", &shard, "--out", p(&part)]);
            let run = if k == 2 {
                patchbench_one_thread
            } else {
                patchbench
            };
            ok(sweep_on(run, target, &a), "shard");
            part
        })
        .collect();
    (std::fs::read_to_string(&full).unwrap(), parts)
}

fn merge(parts: &[&Path], extra: &[&str]) -> Output {
    let mut a = vec!["merge"];
    a.extend(parts.iter().map(|x| p(x)));
    a.extend_from_slice(extra);
    patchbench(&a)
}

/// Sharded into three and merged (parts given out of order) equals the
/// unsharded run; returns the parts' directory for further checks.
fn check_target(target: &str, extra: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let (full, parts) = full_and_parts(dir.path(), target, extra, 3);
    let merged = ok(merge(&[&parts[2], &parts[0], &parts[1]], &[]), "merge");
    let merged = String::from_utf8(merged.stdout).unwrap();
    assert_eq!(
        without_timing(&merged),
        without_timing(&full),
        "{target} {extra:?}: merged parts differ from the unsharded run"
    );
    let units: Vec<usize> = parts
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            v["units"].as_array().unwrap().len()
        })
        .collect();
    println!("{target} {extra:?}: units per shard {units:?}");
    (dir, parts)
}

#[test]
fn block_components_resid_attn_mlp_out_merge_bit_for_bit() {
    check_target("block_every", &[]);
}

#[test]
fn head_components_with_absent_kv_heads_merge_bit_for_bit() {
    check_target("heads_every", &[]);
}

#[test]
fn per_position_patterns_in_dense_batches_merge_bit_for_bit() {
    check_target("head_pattern_by_pos", &[]);
}

#[test]
fn rome_trace_merges_bit_for_bit() {
    check_target("trace_mlp", &["--window", "2"]);
}

#[test]
fn noise_samples_and_the_noising_direction_merge_bit_for_bit() {
    check_target(
        "resid_mid",
        &["--corruption", "gaussian", "--samples", "4", "--seed", "7"],
    );
    check_target("head_out_by_pos", &["--direction", "noise"]);
}

#[test]
fn csv_of_merged_parts_equals_the_unsharded_csv_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_, parts) = full_and_parts(dir.path(), "resid_pre", &[], 2);
    let csv = ok(sweep("resid_pre", &["--format", "csv"]), "csv sweep").stdout;
    let merged = ok(
        merge(&[&parts[0], &parts[1]], &["--format", "csv"]),
        "merge --format csv",
    )
    .stdout;
    assert_eq!(
        String::from_utf8(merged).unwrap(),
        String::from_utf8(csv).unwrap()
    );
}

#[test]
fn bad_part_sets_are_refused_naming_the_part() {
    let (dir, parts) = check_target("resid_pre", &["--corruption", "gaussian", "--samples", "3"]);
    let (a, b, c) = (&parts[0], &parts[1], &parts[2]);

    let err = refused(merge(&[a, c], &[]));
    assert!(err.contains("shard(s) 2 of 3 missing"), "{err}");

    let copy = dir.path().join("copy-of-1.json");
    std::fs::copy(a, &copy).unwrap();
    let err = refused(merge(&[a, b, c, &copy], &[]));
    assert!(
        err.contains("are both shard 1/3") && err.contains("copy-of-1.json"),
        "{err}"
    );

    // A part of another sweep (another seed) is foreign.
    let other = dir.path().join("other-2.json");
    ok(
        sweep(
            "resid_pre",
            &[
                "--corruption",
                "gaussian",
                "--samples",
                "3",
                "--seed",
                "9",
                "--shard",
                "2/3",
                "--out",
                p(&other),
            ],
        ),
        "other shard",
    );
    let err = refused(merge(&[a, &other, c], &[]));
    assert!(
        err.contains("other-2.json is from another sweep") && err.contains("spec differs"),
        "{err}"
    );

    // A part of the same sweep cut into 2 is foreign to a cut into 3.
    let half = dir.path().join("half-1.json");
    ok(
        sweep(
            "resid_pre",
            &[
                "--corruption",
                "gaussian",
                "--samples",
                "3",
                "--shard",
                "1/2",
                "--out",
                p(&half),
            ],
        ),
        "1/2 shard",
    );
    let err = refused(merge(&[a, b, &half], &[]));
    assert!(err.contains("shard count differs"), "{err}");

    // Damaged values name the file and the unit.
    let text = std::fs::read_to_string(b).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["units"][0]["values"] = Value::String("zz".into());
    let bad = dir.path().join("damaged-2.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let err = refused(merge(&[a, &bad, c], &[]));
    assert!(
        err.contains("damaged-2.json") && err.contains("is damaged"),
        "{err}"
    );

    // Not a part file at all.
    let err = refused(merge(&[a, &dir.path().join("full.json"), c], &[]));
    assert!(
        err.contains("full.json: not a patchbench part file"),
        "{err}"
    );
}

#[test]
fn shard_arguments_are_checked() {
    for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
        let err = refused(sweep("resid_pre", &["--shard", bad]));
        assert!(err.contains("give K/N with 1 <= K <= N"), "{bad}: {err}");
    }
    let err = refused(sweep("resid_pre", &["--shard", "1/2", "--format", "csv"]));
    assert!(err.contains("--shard writes a part file"), "{err}");
}

#[test]
fn rome_hidden_and_attention_traces_and_ablations_merge_bit_for_bit() {
    check_target("trace_hidden", &["--samples", "2"]);
    check_target("trace_attn", &["--window", "3", "--samples", "2"]);
    check_target("mlp_out", &["--corruption", "zero", "--direction", "noise"]);
    check_target("head_v", &["--corruption", "mean", "--direction", "noise"]);
}

#[test]
fn a_part_computed_with_another_model_is_refused() {
    let (dir, parts) = check_target("resid_pre", &[]);
    let other = dir.path().join("gpt2-2.json");
    let gpt2 = common::fixture("gpt2-tiny");
    let mut args = vec!["sweep", "--model", p(&gpt2)];
    args.extend([
        "--clean",
        CLEAN,
        "--corrupted",
        CORRUPTED,
        "--answer",
        " Mary",
        "--wrong",
        " John",
        "--target",
        "resid_pre",
        "--shard",
        "2/3",
        "--out",
        p(&other),
    ]);
    ok(patchbench(&args), "gpt2 shard");
    let err = refused(merge(&[&parts[0], &other, &parts[2]], &[]));
    assert!(
        err.contains("gpt2-2.json is from another sweep")
            && err.contains("model fingerprint differs"),
        "{err}"
    );
}

/// A demo IOI dataset of `n` pairs; `labels: false` keeps only pairs of
/// one length and drops their position labels.
fn demo_dataset(dir: &Path, labels: bool) -> PathBuf {
    let path = dir.join("ioi.jsonl");
    let mut a = vec![
        "dataset", "gen", "ioi", "--model", "demo", "-n", "6", "--seed", "1",
    ];
    if !labels {
        a.extend(["--tokens", "15"]);
    }
    let text = String::from_utf8(ok(patchbench(&a), "dataset gen").stdout).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if !labels {
                v.as_object_mut().unwrap().remove("labels");
            }
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// A dataset sweep on the demo model, sharded into 3 and merged, equals the
/// unsharded run (statistics, dataset object and position labels
/// included) in JSON and CSV; the part manifests carry the dataset's digest
/// and its labels.
fn check_dataset(labels: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ds = demo_dataset(dir.path(), labels);
    let sweep = |extra: &[&str]| {
        let mut a = vec![
            "sweep",
            "--model",
            "demo",
            "--dataset",
            p(&ds),
            "--target",
            "resid_pre",
            "--resamples",
            "200",
            "--stats-seed",
            "5",
        ];
        a.extend_from_slice(extra);
        ok(patchbench(&a), "dataset sweep").stdout
    };
    let full = String::from_utf8(sweep(&[])).unwrap();
    let csv = sweep(&["--format", "csv"]);
    let parts: Vec<PathBuf> = (1..=3)
        .map(|k| {
            let part = dir.path().join(format!("part-{k}.json"));
            sweep(&["--shard", &format!("{k}/3"), "--out", p(&part)]);
            part
        })
        .collect();
    let refs: Vec<&Path> = parts.iter().map(|x| x.as_path()).collect();
    let merged = ok(merge(&refs, &[]), "merge").stdout;
    let merged = String::from_utf8(merged).unwrap();
    assert_eq!(without_timing(&merged), without_timing(&full));
    let v: Value = serde_json::from_str(&merged).unwrap();
    assert!(v["stats"].is_object() && v["dataset"]["ids"].as_array().unwrap().len() == 6);
    assert_eq!(
        ok(merge(&refs, &["--format", "csv"]), "merge csv").stdout,
        csv
    );
    let part: Value = serde_json::from_str(&std::fs::read_to_string(&parts[0]).unwrap()).unwrap();
    let m = &part["manifest"];
    assert!(m["dataset"].as_str().unwrap().starts_with("sha256:"), "{m}");
    let want = if labels {
        serde_json::json!(["IO", "S1", "S2", "END"])
    } else {
        Value::Null
    };
    assert_eq!(m["labels"], want, "{m}");
    assert_eq!(v["position_labels"], want);
}

#[test]
fn labelled_dataset_sweeps_merge_bit_for_bit_with_their_statistics() {
    check_dataset(true);
}

#[test]
fn unlabelled_dataset_sweeps_merge_bit_for_bit_with_their_statistics() {
    check_dataset(false);
}
