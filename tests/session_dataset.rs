//! Sessions keep a dataset: inline for small sets, by path and digest for
//! large ones; both round-trip through the YAML, and a changed file (a new
//! digest) turns the results computed on the old one stale.

mod session_support;

use std::path::Path;

use patchbench::data::{self, DatasetPair, Format};
use patchbench::session::dataset::{resolve, DatasetRef};
use patchbench::session::{self, results, Staleness};
use session_support::{same, session_with_result};

fn pairs(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"p{i}\", \"clean\": \"when mary and john went to the store , john gave a drink to\", \
                 \"corrupted\": \"when mary and john went to the store , mary gave a drink to\", \
                 \"answer\": \"mary\", \"wrong\": \"john\", \"labels\": {{\"IO\": 1, \"S2\": [9, 10], \"END\": -1}}}}\n"
            )
        })
        .collect()
}

fn round_trip(s: &session::Session) -> session::Session {
    let yaml = session::to_yaml(s);
    session::parse_str(&yaml, Path::new("x.yaml"))
        .expect("the session reads back")
        .session
}

#[test]
fn small_datasets_are_stored_inline_and_read_back() {
    let ds = data::parse(&pairs(3), Format::Jsonl, "small.jsonl").unwrap();
    let r = DatasetRef::of(&ds, None);
    assert!(r.path.is_none());
    assert_eq!(r.pairs.len(), 3);
    let mut s = session_with_result(&[2, 3], 1);
    s.dataset = Some(r.clone());
    let back = round_trip(&s);
    assert!(same(&s, &back));
    let got = resolve(back.dataset.as_ref().unwrap(), None).unwrap();
    assert!(!got.changed);
    let read: &Vec<DatasetPair> = &got.dataset.pairs;
    assert_eq!(read, &ds.pairs);
}

#[test]
fn large_datasets_are_stored_by_path_and_go_stale_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ioi.jsonl");
    std::fs::write(&file, pairs(100)).unwrap();
    let ds = data::load(&file).unwrap();
    let r = DatasetRef::of(&ds, Some(dir.path()));
    assert_eq!(
        r.path.as_deref(),
        Some("ioi.jsonl"),
        "relative to the session"
    );
    assert!(r.pairs.is_empty());
    let mut s = session_with_result(&[2, 3], 1);
    s.dataset = Some(r);
    // The stored result was computed on this version of the dataset.
    let d = results::inputs_digest(&s, &s.sweeps[0]);
    s.sweeps[0].result.as_mut().unwrap().inputs = d;
    let session_path = dir.path().join("s.yaml");
    session::save(&s, &session_path).unwrap();
    let mut back = session::load(&session_path).unwrap().session;
    assert!(same(&s, &back));
    assert_eq!(results::staleness(&back, &back.sweeps[0], None), None);
    let got = resolve(back.dataset.as_ref().unwrap(), Some(&session_path)).unwrap();
    assert!(!got.changed);
    assert_eq!(got.dataset.len(), 100);

    // Edit the file: the digest changes, and recording it makes the
    // result stale.
    std::fs::write(&file, pairs(99)).unwrap();
    let got = resolve(back.dataset.as_ref().unwrap(), Some(&session_path)).unwrap();
    assert!(got.changed);
    back.dataset.as_mut().unwrap().digest = got.dataset.digest;
    assert_eq!(
        results::staleness(&back, &back.sweeps[0], None),
        Some(Staleness::InputsChanged)
    );
}

#[test]
fn sessions_without_a_dataset_keep_their_digests() {
    // A session of the worked examples still loads with current results.
    let s = session_with_result(&[2, 3], 1);
    assert!(s.dataset.is_none());
    assert!(!session::to_yaml(&s).contains("dataset"));
}
