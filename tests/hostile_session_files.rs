//! Paths given as sessions that are not session files, or not whole ones:
//! FIFOs, devices, directories, links, empty, truncated, binary, oversized
//! and wrongly encoded files. Each goes to `check`, `export` and
//! `sweep --session` through `hostile_support`: refused at once (a FIFO or
//! `/dev/zero` never blocks or streams), naming the path and what to do,
//! with nothing written. A few encodings that are valid (CRLF line endings,
//! the JSON form of a session) must load.

mod hostile_support;

use std::path::{Path, PathBuf};

use hostile_support::{mkfifo, repo, run_all, Case};

fn example(name: &str) -> Vec<u8> {
    std::fs::read(repo("sessions").join(name)).unwrap()
}

/// `check`, `export` and `sweep --session` of `file`, each refused with
/// `words`; `dir` must be unchanged afterwards.
fn every_command(name: &str, file: &Path, dir: &Path, words: &[&str]) -> Vec<Case> {
    let f = file.to_str().unwrap();
    [
        ("check", vec!["check", f]),
        (
            "export",
            vec!["export", f, "--sweep", "0", "--format", "csv"],
        ),
        ("sweep", vec!["sweep", "--session", f, "--write"]),
    ]
    .into_iter()
    .map(|(cmd, args)| {
        Case::new(format!("{name}-{cmd}"), args)
            .expect(words.iter().copied())
            .untouched([dir])
    })
    .collect()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn paths_that_are_not_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("pipe.yaml");
    mkfifo(&fifo);
    let sub = d.join("folder.yaml");
    std::fs::create_dir(&sub).unwrap();
    let to_zero = d.join("zero-link.yaml");
    std::os::unix::fs::symlink("/dev/zero", &to_zero).unwrap();
    let to_fifo = d.join("pipe-link.yaml");
    std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
    let dangling = d.join("dangling.yaml");
    std::os::unix::fs::symlink(d.join("gone.yaml"), &dangling).unwrap();
    let mut cases = vec![];
    let table: [(&str, &Path, &[&str]); 8] = [
        ("fifo", &fifo, &["pipe.yaml", "FIFO", ".yaml session file"]),
        ("fifo-link", &to_fifo, &["pipe-link.yaml", "FIFO"]),
        (
            "dev-zero",
            Path::new("/dev/zero"),
            &["/dev/zero", "character device"],
        ),
        (
            "dev-null",
            Path::new("/dev/null"),
            &["/dev/null", "character device"],
        ),
        (
            "zero-link",
            &to_zero,
            &["zero-link.yaml", "character device"],
        ),
        ("directory", &sub, &["folder.yaml", "directory"]),
        ("dangling", &dangling, &["dangling.yaml", "no such file"]),
        (
            "missing",
            &d.join("nope.yaml"),
            &["nope.yaml", "no such file"],
        ),
    ];
    for (name, path, words) in table {
        cases.extend(every_command(name, path, d, words));
    }
    run_all(cases);
}

#[test]
fn files_that_are_not_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ioi = example("ioi-demo.yaml");
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            String::from_utf8(ioi.clone())
                .unwrap()
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes()),
        )
        .collect();
    let latin1: Vec<u8> = b"version: 1\nmodel: {source: demo}\nnotes: caf\xE9\n".to_vec();
    let mut with_nul = ioi.clone();
    with_nul.splice(200..200, [0u8; 4]);
    let files: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("empty", vec![], vec!["empty", "version: 1"]),
        ("blank", b"\n\n   \n".to_vec(), vec!["empty"]),
        (
            "comments",
            b"# only a comment\n".to_vec(),
            vec!["no YAML content"],
        ),
        ("utf16", utf16, vec!["not UTF-8", "UTF-8"]),
        ("latin1", latin1, vec!["not UTF-8", "0xE9"]),
        ("nul-bytes", with_nul, vec!["nul-bytes"]),
        (
            "gguf",
            std::fs::read(repo("tests/fixtures/llama-tiny-gguf/model.gguf")).unwrap(),
            vec!["gguf"],
        ),
        ("json-list", b"[1, 2, 3]\n".to_vec(), vec!["mapping"]),
        ("scalar", b"hello\n".to_vec(), vec!["mapping"]),
        (
            "list-of-session",
            [b"- ".as_slice(), b"version: 1\n"].concat(),
            vec!["mapping"],
        ),
        (
            "two-documents",
            [ioi.as_slice(), b"---\n", ioi.as_slice()].concat(),
            vec!["more than one"],
        ),
        (
            "tabs",
            b"version: 1\nmodel:\n\tsource: demo\n".to_vec(),
            vec!["tabs", "invalid YAML"],
        ),
        (
            "duplicate-key",
            [ioi.as_slice(), b"version: 1\n"].concat(),
            vec!["duplicate", "version"],
        ),
    ];
    let mut cases = vec![];
    for (name, bytes, words) in &files {
        let f = write(d, &format!("{name}.yaml"), bytes);
        let fname = format!("{name}.yaml");
        let words: Vec<&str> = std::iter::once(fname.as_str())
            .chain(words.iter().copied())
            .collect();
        cases.extend(every_command(name, &f, d, &words));
    }
    run_all(cases);
}

#[test]
fn truncated_and_oversized_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![];
    for name in ["ioi-demo.yaml", "facts-demo.yaml"] {
        let bytes = example(name);
        // Cut inside the prompts, a spec, a token list, the metrics and
        // the timing: each leaves YAML that is whole or broken, never a
        // session (a cut inside the notes can leave a valid one).
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (label, marker, past) in [
            ("prompts", "  corrupted: ", 5),
            ("spec", "    target: ", 6),
            ("ids", "ids: [", 5),
            ("metrics", "logit_diff: [", 30),
            ("timing", "timing:", 12),
            ("answer-id", "answer_id: ", 0),
        ] {
            let cut = text.find(marker).unwrap() + marker.len() + past;
            let fname = format!("cut-{label}-{name}");
            let f = write(d, &fname, &bytes[..cut]);
            cases.push(
                Case::new(
                    format!("truncated-{label}-{name}"),
                    ["check".as_ref(), f.as_os_str()],
                )
                .expect([fname.as_str(), "error"])
                .untouched([d]),
            );
        }
    }
    // Sparse: 65 MiB of size without the disk space.
    let huge = d.join("huge.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    cases.extend(every_command(
        "oversized",
        &huge,
        d,
        &["huge.yaml", "64 MiB"],
    ));
    run_all(cases);
}

#[test]
fn valid_encodings_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ioi = String::from_utf8(example("ioi-demo.yaml")).unwrap();
    let crlf = write(d, "crlf.yaml", ioi.replace('\n', "\r\n"));
    let value: serde_yaml::Value = serde_yaml::from_str(&ioi).unwrap();
    let json = write(d, "json.yaml", serde_json::to_string(&value).unwrap());
    let mut cases = vec![];
    for (name, f) in [("crlf", &crlf), ("json", &json)] {
        cases.push(
            Case::new(format!("{name}-check"), ["check".as_ref(), f.as_os_str()])
                .succeeds()
                .expect(["ok: model demo"])
                .untouched([d]),
        );
        cases.push(
            Case::new(
                format!("{name}-export"),
                [
                    "export",
                    f.to_str().unwrap(),
                    "--sweep",
                    "1",
                    "--format",
                    "json",
                ],
            )
            .succeeds()
            .expect(["head_out"])
            .untouched([d]),
        );
    }
    run_all(cases);
}
