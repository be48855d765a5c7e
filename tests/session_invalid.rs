//! Bad input gets a clear error and loses nothing.
//!
//! Every file in `tests/invalid/` fails to load with the messages its
//! header names (`# expect: TEXT` lines; `# line: N` for the reported
//! line), without hanging (the alias bomb included), without a
//! panic and without the file changing on disk; `check` reports the same
//! problem plus every `# check: TEXT` line. Paths that are not session
//! files at all (a directory, a pipe, a missing or oversized file) are
//! refused before they are read.

mod session_support;

use std::path::Path;
use std::time::{Duration, Instant};

use patchbench::session::{self, MAX_SESSION_BYTES};
use session_support::repo;

struct Case {
    expect: Vec<String>,
    check: Vec<String>,
    line: Option<usize>,
}

fn header(bytes: &[u8]) -> Case {
    let text = String::from_utf8_lossy(bytes);
    let mut case = Case {
        expect: vec![],
        check: vec![],
        line: None,
    };
    for l in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(x) = l.strip_prefix("# expect: ") {
            case.expect.push(x.to_string());
        } else if let Some(x) = l.strip_prefix("# check: ") {
            case.check.push(x.to_string());
        } else if let Some(x) = l.strip_prefix("# line: ") {
            case.line = Some(x.trim().parse().unwrap());
        }
    }
    case
}

#[test]
fn every_invalid_file_fails_with_its_message_and_stays_untouched() {
    let dir = repo("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "only {} files in {dir:?}", files.len());
    for f in files {
        let before = std::fs::read(&f).unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let case = header(&before);
        assert!(!case.expect.is_empty(), "{f:?} has no `# expect:` line");

        let t = Instant::now();
        let result = std::panic::catch_unwind(|| session::load(&f));
        let took = t.elapsed();
        let err = match result {
            Ok(Ok(_)) => panic!("{f:?} loaded, but it is invalid"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => panic!("loading {f:?} panicked"),
        };
        // A hang guard, not a timing test (the alias bomb must not expand:
        // expanded, it takes minutes; timing itself is for benchmarks).
        assert!(took < Duration::from_secs(30), "{f:?} took {took:?}");
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            err.contains(&name),
            "{f:?}: the message must name the file:\n{err}"
        );
        for e in &case.expect {
            assert!(err.contains(e.as_str()), "{f:?}: expected {e:?} in:\n{err}");
        }
        if let Some(line) = case.line {
            assert!(
                err.contains(&format!("{name}:{line}:")),
                "{f:?}: expected line {line} in:\n{err}"
            );
        }

        let report = std::panic::catch_unwind(|| session::check_file(&f))
            .unwrap_or_else(|_| panic!("checking {f:?} panicked"))
            .unwrap();
        assert!(report.session.is_none());
        let all: Vec<String> = report.problems.iter().map(|p| p.render(&f)).collect();
        let all = all.join("\n");
        for e in case.expect.iter().chain(&case.check) {
            assert!(all.contains(e.as_str()), "{f:?}: check lacks {e:?}:\n{all}");
        }

        assert_eq!(std::fs::read(&f).unwrap(), before, "{f:?} was modified");
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), mtime);
    }
}

#[test]
fn a_directory_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let e = session::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a directory, not a session file"), "{e}");
    assert!(session::check_file(dir.path()).is_err());
}

#[test]
fn a_missing_file_names_the_path() {
    let p = Path::new("/nonexistent/patchbench/s.yaml");
    let e = session::load(p).unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent/patchbench/s.yaml: no such file; check the path"),
        "{e}"
    );
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.yaml");
    // Sparse: the size is real but nothing is written.
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(MAX_SESSION_BYTES + 1).unwrap();
    let t = Instant::now();
    let e = session::load(&p).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(e.contains("over the 64 MiB limit"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_pipe_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fifo.yaml");
    let ok = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .expect("mkfifo runs");
    assert!(ok.success());
    let e = session::load(&p).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_gives_a_read_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret.yaml");
    std::fs::write(&p, "version: 1\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let e = session::load(&p).unwrap_err().to_string();
    if std::fs::File::open(&p).is_ok() {
        // Running as root: permissions do not stop reading, so the file is
        // read and rejected for its content instead.
        assert!(e.contains("missing required field"), "{e}");
    } else {
        assert!(
            e.contains("secret.yaml") && e.contains("ermission denied"),
            "{e}"
        );
    }
    // A dangling symlink is unreadable for everyone.
    let link = dir.path().join("dangling.yaml");
    std::os::unix::fs::symlink(dir.path().join("gone.yaml"), &link).unwrap();
    let e = session::load(&link).unwrap_err().to_string();
    assert!(e.contains("dangling.yaml: no such file"), "{e}");
}
