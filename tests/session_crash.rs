//! A crash while saving never loses the session.
//!
//! This test binary re-runs itself as a child process whose only job
//! (`saver_child`, ignored in normal runs) is to save two different sessions
//! over one file in an endless loop. The parent SIGKILLs it after a random
//! delay, many times, and after every kill the file must hold one of the two
//! sessions, whole and loadable. Killed saves leave temporary files behind;
//! the session file itself is never partial.

mod session_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchbench::session::{self, Session};
use session_support::{session_with_result, Xs};

const CHILD_ENV: &str = "PATCHBENCH_TEST_SAVER_FILE";

/// Big enough (about 100 KB) that a save takes a while, so kills land
/// in the middle of writes.
fn sessions() -> (Session, Session) {
    let a = session_with_result(&[12, 40], 1);
    let mut b = session_with_result(&[12, 40], 2);
    b.notes = "the other one".into();
    (a, b)
}

#[test]
#[ignore = "helper process for killing_a_saving_process_never_loses_the_session"]
fn saver_child() {
    let file = PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the crash test"));
    let (a, b) = sessions();
    std::fs::write(file.with_extension("started"), b"").unwrap();
    loop {
        session::save(&a, &file).unwrap();
        session::save(&b, &file).unwrap();
    }
}

fn wait_for(p: &Path, limit: Duration) {
    let t = Instant::now();
    while !p.exists() {
        assert!(t.elapsed() < limit, "the saver child did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killing_a_saving_process_never_loses_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    let (a, b) = sessions();
    session::save(&a, &file).unwrap();
    let (text_a, text_b) = (session::to_yaml(&a), session::to_yaml(&b));
    assert_ne!(text_a, text_b);

    let exe = std::env::current_exe().unwrap();
    let mut rng = Xs(0x5eed);
    let (mut seen_a, mut seen_b) = (0, 0);
    let kills = 100;
    for _ in 0..kills {
        let started = file.with_extension("started");
        let _ = std::fs::remove_file(&started);
        let mut child = Command::new(&exe)
            .args(["saver_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, &file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&started, Duration::from_secs(60));
        std::thread::sleep(Duration::from_micros(rng.next() % 250_000));
        child.kill().unwrap(); // SIGKILL: no destructors, no cleanup
        child.wait().unwrap();

        let now = std::fs::read_to_string(&file).expect("the session file still exists");
        if now == text_a {
            seen_a += 1;
        } else if now == text_b {
            seen_b += 1;
        } else {
            panic!("the session file is neither session after a kill:\n{now}");
        }
        session::load(&file).expect("the session file loads after a kill");
    }
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            e.file_name().to_string_lossy().contains(".tmp-")
        })
        .count();
    eprintln!(
        "{kills} kills: {seen_a} x session A, {seen_b} x session B, {leftovers} interrupted writes"
    );
    // Saves really happened between kills (the loop alternates A and B).
    assert!(
        seen_a > 0 && seen_b > 0,
        "A {seen_a} times, B {seen_b} times"
    );
}
