//! A session's sweep cut into parts (`sweep --session S --shard K/N`) and
//! merged into the session (`merge PARTS --into S`) stores exactly what the
//! unsharded `sweep --session S --write` stores: the two session files are
//! equal byte for byte but for the run's timing and time of computation,
//! every other part of the session kept. For prompt pairs and for a
//! labelled dataset file. Parts that do not match the session (another
//! sweep, model, spec, prompts; a sweep already stored) are refused and the
//! session left as it was.

mod common;
use common::cli::{ok, p, patchbench, refused};

use std::path::{Path, PathBuf};
use std::process::Output;

use patchbench::data;
use patchbench::patching::{SweepSpec, Target};
use patchbench::session::{self, dataset::DatasetRef, Session, SweepEntry};

/// The session text without what no two runs share: the time a result was
/// computed, the model's load time and the sweep's timing.
fn without_timing(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            !["computed_at:", "load_ms:", "sweep_ms:", "forward_passes:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `n` shards of `session`'s due sweep, returning the part files.
fn shards(session: &Path, n: usize, extra: &[&str]) -> Vec<PathBuf> {
    let dir = session.parent().unwrap();
    (1..=n)
        .map(|k| {
            let part = dir.join(format!("part-{k}-of-{n}.json"));
            let shard = format!("{k}/{n}");
            let mut a = vec!["sweep", "--session", p(session), "--shard", &shard];
            a.extend_from_slice(extra);
            a.extend(["--out", p(&part)]);
            ok(patchbench(&a), "session shard");
            assert!(!dir.join(format!("part-{k}-of-{n}.json.ckpt")).exists());
            part
        })
        .collect()
}

fn merge_into(parts: &[PathBuf], session: &Path) -> Output {
    let mut a = vec!["merge"];
    a.extend(parts.iter().rev().map(|x| p(x)));
    a.extend(["--into", p(session)]);
    patchbench(&a)
}

/// Writes `s` twice (`unsharded.yaml`, `sharded.yaml`), fills the first
/// with `sweep --session --write` and the second with parts merged
/// `--into` it, and asserts the files agree.
fn check(dir: &Path, s: &Session, n: usize) -> (PathBuf, Vec<PathBuf>) {
    let (a, b) = (dir.join("unsharded.yaml"), dir.join("sharded.yaml"));
    session::save(s, &a).unwrap();
    session::save(s, &b).unwrap();
    ok(
        patchbench(&["sweep", "--session", p(&a), "--write"]),
        "unsharded session sweep",
    );
    let parts = shards(&b, n, &[]);
    ok(merge_into(&parts, &b), "merge --into");
    assert_eq!(
        without_timing(&b),
        without_timing(&a),
        "the merged session differs from the unsharded run's"
    );
    (b, parts)
}

/// The IOI example session with its second sweep's result dropped: the
/// first sweep's result and the notes must survive the merge.
fn ioi_session() -> Session {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = session::load(&repo.join("sessions/ioi-demo.yaml"))
        .unwrap()
        .session;
    assert!(s.sweeps.len() >= 2 && s.sweeps[0].result.is_some());
    s.sweeps[1].result = None;
    s.sweeps.truncate(2);
    s
}

#[test]
fn prompt_pair_session_sweep_merges_into_the_session_as_an_unsharded_run_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = ioi_session();
    let (b, _) = check(dir.path(), &s, 3);
    let back = session::load(&b).unwrap().session;
    assert_eq!(back.sweeps[0], s.sweeps[0], "the stored sweep is kept");
    assert_eq!(back.notes, s.notes);
    assert!(back.sweeps[1].result.is_some());
}

#[test]
fn labelled_dataset_session_sweep_merges_into_the_session_as_an_unsharded_run_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let ds_path = dir.path().join("ioi.jsonl");
    ok(
        patchbench(&[
            "dataset",
            "gen",
            "ioi",
            "--model",
            "demo",
            "-n",
            "5",
            "--seed",
            "3",
            "--out",
            p(&ds_path),
        ]),
        "dataset gen",
    );
    let ds = data::load(&ds_path).unwrap();
    assert!(ds.pairs.iter().any(|x| !x.labels.is_empty()), "labelled");
    let mut s = ioi_session();
    // By path, so the merge reads the file's digest as the sweep does.
    s.dataset = Some(DatasetRef {
        path: Some("ioi.jsonl".into()),
        digest: ds.digest.clone(),
        pairs: vec![],
    });
    s.sweeps = vec![SweepEntry {
        spec: SweepSpec::new(Target::ResidPre),
        pairs: None,
        result: None,
    }];
    let (b, parts) = check(dir.path(), &s, 2);
    let back = session::load(&b).unwrap().session;
    let stored = back.sweeps[0].result.as_ref().unwrap();
    assert_eq!(stored.result.position_labels, ["IO", "S1", "S2", "END"]);
    let part: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&parts[0]).unwrap()).unwrap();
    assert_eq!(
        part["manifest"]["labels"],
        serde_json::json!(["IO", "S1", "S2", "END"])
    );
    assert_eq!(part["manifest"]["dataset"], serde_json::json!(ds.digest));

    // The dataset file changed since the shards ran: refused.
    std::fs::write(
        &ds_path,
        std::fs::read_to_string(&ds_path).unwrap() + "\n\n",
    )
    .unwrap();
    let c = dir.path().join("changed.yaml");
    session::save(&s, &c).unwrap();
    let err = refused(merge_into(&parts, &c));
    assert!(
        err.contains("the file changed since the shards ran"),
        "{err}"
    );
}

#[test]
fn parts_that_do_not_match_the_session_are_refused_and_the_session_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (b, parts) = check(dir.path(), &ioi_session(), 2);

    let err = refused(merge_into(&parts, &b));
    assert!(
        err.contains("sweep 1 of") && err.contains("already has a current result"),
        "{err}"
    );

    let fresh = |name: &str, edit: &dyn Fn(&mut Session)| {
        let mut s = ioi_session();
        edit(&mut s);
        let path = dir.path().join(name);
        session::save(&s, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = refused(merge_into(&parts, &path));
        assert_eq!(std::fs::read(&path).unwrap(), before, "{name} untouched");
        err
    };
    let err = fresh("spec.yaml", &|s| {
        s.sweeps[1].spec.target = Target::ResidPost
    });
    assert!(err.contains("was edited since the shards ran"), "{err}");
    let err = fresh("prompts.yaml", &|s| {
        s.prompts[1].clean = s.prompts[1].clean.replace("park", "store")
    });
    assert!(err.contains("were edited since the shards ran"), "{err}");
    let err = fresh("model.yaml", &|s| s.model.source = "random:tiny".into());
    assert!(
        err.contains("is a session on model \"random:tiny\""),
        "{err}"
    );
    let err = fresh("fewer.yaml", &|s| s.sweeps.truncate(1));
    assert!(err.contains("the parts are of sweep 1 but"), "{err}");
    let err = fresh("fingerprint.yaml", &|s| {
        s.model.fingerprint = Some("0123456789abcdef".into())
    });
    assert!(err.contains("the model changed"), "{err}");

    // Parts of a sweep run without --session belong to no session.
    let part = dir.path().join("plain.json");
    ok(
        patchbench(&[
            "sweep",
            "--model",
            "demo",
            "--target",
            "resid_pre",
            "--clean",
            "when mary and john went to the store , john gave a drink to",
            "--corrupted",
            "when mary and john went to the store , mary gave a drink to",
            "--answer",
            "mary",
            "--wrong",
            "john",
            "--shard",
            "1/1",
            "--out",
            p(&part),
        ]),
        "plain shard",
    );
    let plain = dir.path().join("plain.yaml");
    session::save(&ioi_session(), &plain).unwrap();
    let err = refused(merge_into(&[part], &plain));
    assert!(err.contains("run without --session"), "{err}");
}

#[test]
fn a_session_with_several_sweeps_due_needs_the_sweep_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = ioi_session();
    s.sweeps[0].result = None;
    let path = dir.path().join("two.yaml");
    session::save(&s, &path).unwrap();
    let shard = |extra: &[&str]| {
        let mut a = vec!["sweep", "--session", p(&path), "--shard", "1/2"];
        a.extend_from_slice(extra);
        patchbench(&a)
    };
    let err = refused(shard(&[]));
    assert!(
        err.contains("has 2 sweeps to run (0, 1)") && err.contains("--sweep N"),
        "{err}"
    );
    let err = refused(shard(&["--write"]));
    assert!(err.contains("merge PARTS... --into"), "{err}");
    let err = refused(shard(&["--sweep", "5"]));
    assert!(
        err.contains("--sweep 5:") && err.contains("numbered from 0"),
        "{err}"
    );
    // Sweep 1 alone, in two parts, merged, then sweep 0 the same way.
    for i in ["1", "0"] {
        let parts = shards(&path, 2, &["--sweep", i]);
        ok(merge_into(&parts, &path), "merge --into");
    }
    let back = session::load(&path).unwrap().session;
    assert!(back.sweeps.iter().all(|e| e.result.is_some()));
    let err = refused(shard(&[]));
    assert!(err.contains("nothing to run"), "{err}");
}
