//! Hostile session files, written at test time from the examples in
//! `sessions/`: damaged stored results, a byte-order mark, control
//! characters, huge strings. Each is checked through the binary (`check`,
//! `export`, `sweep --session`) by the harness in `hostile_support`: a clear
//! refusal naming the file, the field and the fix, no panic, no escape
//! sequence, no hang, and the file untouched.

mod hostile_support;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use hostile_support::{repo, run_all, Case};

/// `example` with the field at `path` (`sweeps.3.spec.corruption.samples`)
/// set to the YAML text `value`, written verbatim (so values YAML parsers
/// disagree on, like 2^64 or 1e400, reach patchbench as written).
fn with_field(example: &str, path: &str, value: &str) -> String {
    let mut v: Value = serde_yaml::from_str(&self::example(example)).unwrap();
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    let mut slot = &mut v;
    for step in parent.split('.').filter(|s| !s.is_empty()) {
        slot = match step.parse::<usize>() {
            Ok(i) => slot.get_mut(i).unwrap(),
            Err(_) => slot.get_mut(step).unwrap(),
        };
    }
    const MARK: &str = "HOSTILE-VALUE-MARK";
    let new = Value::String(MARK.into());
    match key.parse::<usize>() {
        Ok(i) => slot.as_sequence_mut().unwrap()[i] = new,
        Err(_) => {
            slot.as_mapping_mut()
                .unwrap()
                .insert(Value::String(key.into()), new);
        }
    }
    serde_yaml::to_string(&v).unwrap().replacen(MARK, value, 1)
}

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
    // Absurd sizes are refused on load, before `sweep --session` allocates.
    let samples = with_field(
        "facts-demo.yaml",
        "sweeps.3.spec.corruption.samples",
        "1000000000",
    );
    let samples = write(d, "samples.yaml", samples);
    cases.extend(every_command(
        "samples-billion",
        &samples,
        &["samples.yaml", "sweeps[3].spec.corruption.samples", "10000"],
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

/// Numbers that are negative, huge, NaN or infinite, in every numeric field
/// that sizes or indexes something. `words` must appear in the refusal.
#[test]
fn absurd_numbers_are_refused_with_the_field() {
    let gauss = "sweeps.3.spec.corruption";
    // Values serde cannot read are reported at the field inside the
    // corruption, not at the enclosing spec.
    const SAMPLES: &str = "sweeps[3].spec.corruption.samples";
    const SCALE: &str = "sweeps[3].spec.corruption.scale";
    const SEED: &str = "sweeps[3].spec.corruption.seed";
    const POSITIONS: &str = "sweeps[3].spec.corruption.positions";
    let table: &[(&str, &str, &str, &[&str])] = &[
        ("facts", "version", "-1", &["version", "version: 1"]),
        ("facts", "version", "0", &["version", "version: 1"]),
        ("facts", "version", "99999999999999999999", &["version"]),
        ("facts", "version", ".nan", &["version", "version: 1"]),
        ("facts", "version", "'1'", &["version", "whole number"]),
        ("facts", "version", "2", &["version 2", "upgrade"]),
        ("facts", "samples", "0", &["samples", "samples: 10"]),
        ("facts", "samples", "1000000000", &["samples", "10000"]),
        (
            "facts",
            "samples",
            "18446744073709551615",
            &["samples", "10000"],
        ),
        ("facts", "samples", "18446744073709551616", &[SAMPLES]),
        ("facts", "samples", "-1", &[SAMPLES, "-1"]),
        ("facts", "samples", ".nan", &[SAMPLES]),
        ("facts", "samples", "1e400", &[SAMPLES]),
        ("facts", "scale", "0", &["scale", "positive"]),
        ("facts", "scale", "-1.5", &["scale", "positive"]),
        ("facts", "scale", ".nan", &["scale", "positive"]),
        ("facts", "scale", ".inf", &["scale", "positive"]),
        ("facts", "scale", "-.inf", &["scale", "positive"]),
        ("facts", "scale", "1e400", &[SCALE, "1e400"]),
        ("facts", "seed", "-1", &[SEED]),
        ("facts", "seed", "18446744073709551616", &[SEED]),
        ("facts", "positions", "[-1]", &[POSITIONS]),
        ("facts", "positions", "[99999999999999999999]", &[POSITIONS]),
        ("facts", "sweeps.3.spec.window", "-1", &["window"]),
        ("facts", "sweeps.3.spec.window", "1e400", &["window"]),
        (
            "ioi",
            "sweeps.0.spec.window",
            "99999999999999999999",
            &["window"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[4, -14]",
            &["shape"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[18446744073709551615, 14]",
            &["shape", "impossibly large"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[4611686018427387904, 14]",
            &["shape", "impossibly large"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[4, 0]",
            &["shape", "zero-length axis `pos`"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[0, 0]",
            &["shape", "zero-length axis"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[4, 14, 1]",
            &["shape", "3 dimensions"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.shape",
            "[56]",
            &["shape", "1 dimensions"],
        ),
        ("ioi", "sweeps.0.result.result.shape", "[]", &["shape"]),
        (
            "ioi",
            "sweeps.1.result.result.shape",
            "[4, 0]",
            &["shape", "zero-length axis `head`"],
        ),
        ("ioi", "sweeps.1.result.result.shape", "[5, 4]", &["cells"]),
        (
            "ioi",
            "sweeps.0.result.answer_id",
            "4294967296",
            &["answer_id"],
        ),
        ("ioi", "sweeps.0.result.answer_id", "-1", &["answer_id"]),
        ("ioi", "sweeps.0.result.wrong_id", ".inf", &["wrong_id"]),
        (
            "ioi",
            "sweeps.0.result.clean_tokens.ids",
            "[99999999999]",
            &["ids"],
        ),
        (
            "ioi",
            "sweeps.0.result.clean_tokens.ids",
            "[]",
            &["clean_tokens"],
        ),
        (
            "ioi",
            "sweeps.0.result.corrupted_tokens.ids",
            "[1, 2]",
            &["corrupted_tokens"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.timing.forward_passes",
            "-1",
            &["forward_passes"],
        ),
        (
            "ioi",
            "sweeps.0.result.result.timing.forward_passes",
            "1e400",
            &["forward_passes"],
        ),
        (
            "ioi",
            "sweeps.0.pairs",
            "[2]",
            &["pairs[0]", "does not exist"],
        ),
        ("ioi", "sweeps.0.pairs", "[-1]", &["pairs"]),
        (
            "ioi",
            "sweeps.0.pairs",
            "[99999999999999999999]",
            &["pairs"],
        ),
        ("ioi", "sweeps.0.pairs", "[0, 0]", &["listed twice"]),
        ("ioi", "sweeps.0.pairs", "[]", &["pairs", "empty"]),
        ("ioi", "ui.selected_sweep", "-1", &["selected_sweep"]),
        (
            "ioi",
            "ui.selected_sweep",
            "99999999999999999999",
            &["selected_sweep"],
        ),
        (
            "ioi",
            "ui.selected_sweep",
            "9",
            &["selected_sweep", "reset"],
        ),
        (
            "ioi",
            "ui.selected_pair",
            "1000000",
            &["selected_pair", "reset"],
        ),
        (
            "ioi",
            "ui.cell",
            "[999999, 999999]",
            &["ui.cell", "clamped"],
        ),
        ("ioi", "ui.cell", "[1, 2, 3]", &["ui.cell", "3 indices"]),
        ("ioi", "ui.cell", "[-1, 0]", &["cell"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![];
    for (i, (ex, path, value, words)) in table.iter().enumerate() {
        let (example, path) = match (*ex, *path) {
            ("facts", "version") => ("facts-demo.yaml", "version".to_string()),
            ("facts", p) if !p.contains('.') => ("facts-demo.yaml", format!("{gauss}.{p}")),
            ("facts", p) => ("facts-demo.yaml", p.to_string()),
            (_, p) => ("ioi-demo.yaml", p.to_string()),
        };
        let name = format!("number-{i}-{}.yaml", path.replace('.', "-"));
        let f = write(d, &name, with_field(example, &path, value));
        cases.push(
            Case::new(
                format!("number-{i}-{path}={value}"),
                ["check".as_ref(), f.as_os_str()],
            )
            .expect(std::iter::once(name.as_str()).chain(words.iter().copied()))
            .untouched([d]),
        );
    }
    run_all(cases);
}

/// Control characters and 100,000-character strings in every kind of
/// string field: shown escaped and clipped, never raw or whole.
#[test]
fn hostile_strings_are_escaped_and_clipped() {
    let long = format!("'{}'", "y".repeat(100_000));
    let esc = r#""\e]0;owned\a\e[2J\x9b31m""#;
    let bidi = r#""abc\u202Edef""#;
    // (field, value, outcome words; `None` = the session stays valid)
    let table: Vec<(&str, &str, Option<&[&str]>)> = vec![
        ("model.source", esc, None),
        ("model.source", long.as_str(), None),
        ("model.source", bidi, None),
        ("notes", esc, None),
        ("notes", long.as_str(), None),
        ("model.fingerprint", esc, Some(&["stale", "owned"])),
        ("prompts.0.clean", esc, Some(&["stale"])),
        ("prompts.0.clean", long.as_str(), Some(&["stale"])),
        ("prompts.0.corrupted", esc, Some(&["stale"])),
        ("prompts.0.answer", esc, Some(&["stale"])),
        ("prompts.0.answer", long.as_str(), Some(&["stale"])),
        (
            "prompts.0.wrong",
            r#""mary""#,
            Some(&["prompts[0].wrong", "same as the answer"]),
        ),
        ("ui.metric", esc, Some(&["ui.metric", "owned", "reset"])),
        (
            "ui.metric",
            long.as_str(),
            Some(&["ui.metric", "more characters"]),
        ),
        (
            "sweeps.0.spec.target",
            esc,
            Some(&["target", "\\e]0;owned", "resid_pre"]),
        ),
        (
            "sweeps.0.spec.target",
            long.as_str(),
            Some(&["target", "more characters"]),
        ),
        (
            "sweeps.0.spec.direction",
            esc,
            Some(&["direction", "denoise"]),
        ),
        (
            "sweeps.0.spec.corruption.kind",
            esc,
            Some(&["kind", "gaussian"]),
        ),
        (
            "sweeps.0.result.result.axes.0",
            esc,
            Some(&["axes[0]", "owned", "not an axis"]),
        ),
        ("sweeps.0.result.clean_tokens.strings.0", esc, None),
        ("sweeps.0.result.answer", esc, None),
        ("sweeps.0.result.computed_at", long.as_str(), None),
        ("sweeps.0.result.result.timing.device", esc, None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![];
    for (i, (path, value, words)) in table.iter().enumerate() {
        let name = format!("string-{i}-{}.yaml", path.replace('.', "-"));
        let f = write(d, &name, with_field("ioi-demo.yaml", path, value));
        let case = Case::new(
            format!("string-{i}-{path}"),
            ["check".as_ref(), f.as_os_str()],
        )
        .untouched([d]);
        cases.push(match words {
            None => case.succeeds().expect(["ok"]),
            Some(w) => case.expect(std::iter::once(name.as_str()).chain(w.iter().copied())),
        });
    }
    // export and sweep --session read the same way; a few of each.
    for (path, fails) in [
        ("model.source", false),
        ("prompts.0.clean", false),
        ("sweeps.0.spec.target", true),
        ("sweeps.0.result.result.axes.0", true),
    ] {
        let i = table.iter().position(|row| row.0 == path).unwrap();
        let name = format!("string-{i}-{}.yaml", path.replace('.', "-"));
        let f = d.join(&name);
        let f = f.to_str().unwrap();
        for (cmd, args) in [
            (
                "export",
                vec!["export", f, "--sweep", "0", "--format", "csv"],
            ),
            ("sweep", vec!["sweep", "--session", f, "--format", "json"]),
        ] {
            let case = Case::new(format!("string-{i}-{path}-{cmd}"), args).untouched([d]);
            cases.push(if fails {
                case.expect([name.as_str()])
            } else {
                // A changed prompt reruns nothing without --rerun-stale:
                // either way no escape sequence, the file untouched.
                case.succeeds()
            });
        }
    }
    // YAML keys longer than 1024 characters are a syntax error; a shorter
    // one is an unknown field, quoted escaped.
    let ioi = example("ioi-demo.yaml");
    let key = write(
        d,
        "unknown-key.yaml",
        format!("{ioi}\"\\e[2J{}\": 1\n", "k".repeat(900)),
    );
    let long_key = write(
        d,
        "long-key.yaml",
        format!("{ioi}{}: 1\n", "k".repeat(100_000)),
    );
    cases.push(
        Case::new("string-unknown-key", ["check".as_ref(), key.as_os_str()])
            .expect(["unknown-key.yaml", "unknown field", "kkkk"])
            .untouched([d]),
    );
    cases.push(
        Case::new("string-long-key", ["check".as_ref(), long_key.as_os_str()])
            .expect(["long-key.yaml", "invalid YAML"])
            .untouched([d]),
    );
    run_all(cases);
}
