//! Autosave and recovery, and the session browser's listing.

mod session_support;

use std::time::{Duration, SystemTime};

use patchbench::session::{self, find_autosave, find_autosaves, list_sessions, Autosave};
use session_support::{ioi_pair, same, session_with_result};

#[test]
fn an_autosave_left_behind_is_found_restored_and_discarded() {
    let data = tempfile::tempdir().unwrap();
    let auto_dir = data.path().join("autosave");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("my study.yaml");
    let saved = session_with_result(&[3, 4], 5);
    session::save(&saved, &file).unwrap();
    // The file on disk is older than the edits that follow.
    let old = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let slot = Autosave::in_dir(&auto_dir, Some(&file));
    let mut edited = saved.clone();
    edited.notes = "unsaved edits".into();
    slot.save(&edited).unwrap();
    assert!(slot.path().starts_with(&auto_dir));
    let name = slot
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("my_study-") && name.ends_with(".yaml"),
        "{name}"
    );
    let head = std::fs::read_to_string(slot.path()).unwrap();
    assert!(head.starts_with("# patchbench autosave of \""), "{head}");

    // The next start: the autosave is found, newer than the file, restorable.
    let found = find_autosaves(&auto_dir);
    assert_eq!(found.len(), 1);
    let r = &found[0];
    assert_eq!(
        r.original.as_deref(),
        Some(std::fs::canonicalize(&file).unwrap().as_path())
    );
    assert!(r.newer_than_original);
    assert!(same(&r.load().unwrap().session, &edited));
    let direct = find_autosave(&auto_dir, &file).expect("found by its session file");
    assert_eq!(direct.autosave, r.autosave);
    // The session file itself was not touched.
    assert!(same(&session::load(&file).unwrap().session, &saved));

    r.discard().unwrap();
    assert!(find_autosaves(&auto_dir).is_empty());
    assert!(find_autosave(&auto_dir, &file).is_none());
    slot.discard().unwrap(); // already gone: fine
}

#[test]
fn unsaved_sessions_get_their_own_slot_and_save_as_moves_it() {
    let auto_dir = tempfile::tempdir().unwrap();
    let mut slot = Autosave::in_dir(auto_dir.path(), None);
    let other = Autosave::in_dir(auto_dir.path(), None);
    assert_ne!(slot.path(), other.path(), "two new sessions, two slots");
    let s = session::Session::new("demo", ioi_pair());
    slot.save(&s).unwrap();
    let found = find_autosaves(auto_dir.path());
    assert_eq!(found.len(), 1);
    assert!(found[0].original.is_none() && found[0].newer_than_original);
    assert!(found[0]
        .autosave
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("unsaved-"));

    // After "save as", the slot follows the new file and the old one goes.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("named.yaml");
    session::save(&s, &file).unwrap();
    slot.set_original(&file).unwrap();
    assert!(slot.original().is_some());
    assert!(find_autosaves(auto_dir.path()).is_empty());
    slot.save(&s).unwrap();
    let found = find_autosaves(auto_dir.path());
    assert_eq!(found.len(), 1);
    assert!(found[0]
        .original
        .as_deref()
        .unwrap()
        .ends_with("named.yaml"));
}

#[test]
fn the_browser_lists_sessions_and_broken_files_with_their_error() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let good = session_with_result(&[2, 2], 1);
    session::save(&good, &a.path().join("good.yaml")).unwrap();
    std::fs::write(b.path().join("broken.yml"), "version: 1\nmodel: [\n").unwrap();
    std::fs::write(b.path().join("readme.txt"), "not a session").unwrap();
    std::fs::write(b.path().join(".hidden.yaml"), "x").unwrap();
    std::fs::create_dir(b.path().join("dir.yaml")).unwrap();
    let missing = a.path().join("missing");
    let rows = list_sessions(&[a.path().to_path_buf(), b.path().to_path_buf(), missing]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let good_row = rows.iter().find(|r| r.name == "good").unwrap();
    assert_eq!(good_row.model.as_deref(), Some("demo"));
    assert_eq!(
        good_row.first_prompt.as_deref(),
        Some(ioi_pair().clean.as_str())
    );
    assert_eq!(good_row.n_sweeps, 2);
    assert!(good_row.error.is_none() && good_row.modified.is_some());
    let bad = rows.iter().find(|r| r.name == "broken").unwrap();
    assert!(bad.model.is_none());
    assert!(
        bad.error.as_deref().unwrap().contains("broken.yml:3:1"),
        "{bad:?}"
    );
}

#[test]
fn the_repository_examples_are_in_the_default_listing() {
    let dirs = session::default_session_dirs();
    let rows = list_sessions(&dirs);
    assert!(
        rows.iter()
            .any(|r| r.name == "ioi-gpt2" && r.error.is_none()),
        "{rows:?}"
    );
}
