//! Hostile session files, written at test time from the examples in
//! `sessions/`: damaged stored results, a byte-order mark, control
//! characters, huge strings. Each is checked through the binary (`check`,
//! `export`, `sweep --session`) by the harness in `hostile_support`: a clear
//! refusal naming the file, the field and the fix, no panic, no escape
//! sequence, no hang, and the file untouched.

mod hostile_support;

use std::path::{Path, PathBuf};

use hostile_support::{repo, run_all, Case};

fn example(name: &str) -> String {
    std::fs::read_to_string(repo("sessions").join(name)).unwrap()
}

/// Writes `text` as `name` in `dir` and returns its path.
fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `check`, `export` and `sweep --session` of `file` must each be refused
/// with `words` in the message.
fn every_command(name: &str, file: &Path, words: &[&str]) -> Vec<Case> {
    let f = file.to_str().unwrap();
    let dir = file.parent().unwrap();
    [
        ("check", vec!["check", f]),
        (
            "export",
            vec!["export", f, "--sweep", "0", "--format", "json"],
        ),
        ("sweep", vec!["sweep", "--session", f]),
    ]
    .into_iter()
    .map(|(cmd, args)| {
        Case::new(format!("{name}-{cmd}"), args)
            .expect(words.iter().copied())
            .untouched([dir])
    })
    .collect()
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = vec![];
    for name in ["ioi-demo.yaml", "facts-demo.yaml", "induction-demo.yaml"] {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(example(name).into_bytes());
        let f = write(dir.path(), &format!("bom-{name}"), bytes);
        cases.push(
            Case::new(
                format!("bom-check-{name}"),
                ["check".as_ref(), f.as_os_str()],
            )
            .succeeds()
            .expect(["ok"])
            .untouched([dir.path()]),
        );
    }
    run_all(cases);
}

#[test]
fn damaged_stored_results_fail_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ioi = example("ioi-demo.yaml");
    let mut cases = vec![];
    let zero = write(
        d,
        "zero-axis.yaml",
        ioi.replacen("shape: [4, 14]", "shape: [0, 14]", 1),
    );
    cases.extend(every_command(
        "zero-axis",
        &zero,
        &["zero-axis.yaml", "sweeps[0]", "zero-length axis", "rerun"],
    ));
    let short = ioi
        .replacen(
            "ids: [2, 29, 3, 30, 4, 5, 6, 77, 7, 30, 8, 9, 97, 5]",
            "ids: [2, 29, 3, 30, 4, 5, 6, 77, 7, 30, 8, 9, 97]",
            1,
        )
        .replacen("\"drink\", \"to\"]", "\"drink\"]", 1);
    let short = write(d, "tokens-short.yaml", short);
    cases.extend(every_command(
        "tokens-short",
        &short,
        &[
            "tokens-short.yaml",
            "sweeps[0]",
            "14 positions",
            "13 tokens",
            "rerun",
        ],
    ));
    run_all(cases);
}

#[test]
fn strings_from_the_file_reach_the_terminal_escaped_and_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ioi = example("ioi-demo.yaml");
    let esc = write(
        d,
        "esc.yaml",
        ioi.replacen("source: demo", "source: \"\\e]0;owned\\a\\e[2Jdemo\"", 1),
    );
    let long = "x".repeat(100_000);
    let same = write(
        d,
        "same-answer.yaml",
        ioi.replacen("answer: mary", &format!("answer: {long}"), 1)
            .replacen("wrong: john", &format!("wrong: {long}"), 1),
    );
    let cases = vec![
        Case::new("esc-model-check", ["check".as_ref(), esc.as_os_str()])
            .succeeds()
            .expect(["\\e]0;owned"])
            .untouched([d]),
        Case::new(
            "long-same-answer-check",
            ["check".as_ref(), same.as_os_str()],
        )
        .expect([
            "same-answer.yaml",
            "prompts[0].wrong",
            "same as the answer",
            "more characters",
        ])
        .untouched([d]),
    ];
    run_all(cases);
}
