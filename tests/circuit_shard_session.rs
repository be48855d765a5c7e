//! Circuit parts merged `--into SESSION`: the search lands in the
//! session's circuits exactly as the workbench stores one it ran.

mod common;
use common::cli::{ok, p, patchbench, refused};

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::DEMO_PAIR as PAIR;

/// The `n` part files of one search, written in `dir`.
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

/// `merge --into SESSION`: the search stored in the session's circuits as
/// the workbench stores one it ran (the top edges, trimmed; the same
/// numbers as an unsharded search of the session's prompts); a second
/// merge finds the result current and refuses.
#[test]
fn circuit_parts_merge_into_a_session_as_the_workbench_stores_the_search() {
    use patchbench::circuits::run_circuit;
    use patchbench::model::loaded::LoadOptions;
    use patchbench::model::LoadedModel;
    use patchbench::session::circuit::{CircuitSpec, StoredCircuit};

    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.yaml");
    std::fs::write(
        &session,
        "version: 1\nmodel:\n  source: demo\nprompts:\n- clean: john gave a drink to\n  \
         corrupted: mary gave a drink to\n  answer: mary\n  wrong: john\nnotes: kept\n",
    )
    .unwrap();
    let mut args = vec!["--model", "demo"];
    args.extend_from_slice(&PAIR);
    args.extend(["--method", "atp-star", "--check-exact", "4"]);
    args.extend(["--faithfulness-points", "2"]);
    let ps = parts(dir.path(), &args, 2);
    let into = ["--into", p(&session)];
    ok(merge(&ps, &into), "merge --into");

    let s = patchbench::session::load(&session).unwrap().session;
    assert_eq!(s.notes, "kept");
    assert_eq!(s.circuits.len(), 1);
    let entry = &s.circuits[0];
    let spec = CircuitSpec {
        check_exact: 4,
        faithfulness_points: 2,
        ..CircuitSpec::new(patchbench::circuits::Method::AtpStar)
    };
    assert_eq!(entry.spec, spec);
    let stored = entry.result.clone().unwrap();

    let m = LoadedModel::load("demo", &LoadOptions::cpu()).unwrap();
    let pairs = patchbench::patching::prepare_pairs(&m.tokenizer, &s.prompts, None).unwrap();
    let want = run_circuit(&m.model, &pairs, &spec.options().unwrap()).unwrap();
    let want = StoredCircuit {
        result: want,
        ..stored.clone()
    }
    .trimmed();
    let numbers = |c: &StoredCircuit| {
        let mut r = c.result.clone();
        r.timing = Default::default();
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(numbers(&stored), numbers(&want));
    assert_eq!(stored.result.edges.len(), 100.min(stored.result.n_edges));

    let e = refused(merge(&ps, &into));
    assert!(e.contains("already has a current result"), "{e}");
}
