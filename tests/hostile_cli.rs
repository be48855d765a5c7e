//! Hostile command lines: bad values for every argument that names or sizes
//! something (`sweep`, `export`, `check`, `run`), each refused with a message
//! that names the value and the fix, with no panic, no hang, no escape
//! sequence and the user's files untouched. The harness and the classes of
//! hostile input are described in `hostile_support`.

mod hostile_support;

use hostile_support::{repo, run_all, Case};

const CLEAN: &str = "when mary and john went to the store , john gave a drink to";
const CORRUPTED: &str = "when mary and john went to the store , mary gave a drink to";

/// A valid demo-model sweep with `extra` appended (later flags win or clash).
fn sweep(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "sweep",
        "--model",
        "demo",
        "--device",
        "cpu",
        "--clean",
        CLEAN,
        "--corrupted",
        CORRUPTED,
        "--answer",
        "mary",
        "--wrong",
        "john",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn unknown_words_are_named() {
    let s = repo("sessions/ioi-demo.yaml");
    let s = s.to_str().unwrap();
    let cases = vec![
        Case::new("sweep-unknown-target", sweep(&["--target", "nope"]))
            .expect(["nope", "resid_pre"]),
        Case::new(
            "sweep-unknown-direction",
            sweep(&["--target", "resid_pre", "--direction", "sideways"]),
        )
        .expect(["sideways", "denoise"]),
        Case::new(
            "sweep-unknown-corruption",
            sweep(&["--target", "resid_pre", "--corruption", "fog"]),
        )
        .expect(["fog", "gaussian"]),
        Case::new(
            "sweep-unknown-format",
            sweep(&["--target", "resid_pre", "--format", "xml"]),
        )
        .expect(["xml", "csv"]),
        Case::new(
            "sweep-unknown-metric",
            sweep(&["--target", "resid_pre", "--metric", "accuracy"]),
        )
        .expect(["accuracy", "logit_diff"]),
        Case::new(
            "export-unknown-format",
            ["export", s, "--sweep", "0", "--format", "png"],
        )
        .expect(["png", "svg"])
        .untouched([s]),
        Case::new(
            "export-unknown-metric",
            [
                "export", s, "--sweep", "0", "--format", "svg", "--metric", "bogus",
            ],
        )
        .expect(["bogus", "logit_diff"])
        .untouched([s]),
        Case::new(
            "export-sweep-out-of-range",
            ["export", s, "--sweep", "7", "--format", "csv"],
        )
        .expect(["sweep 7", "resid_pre"])
        .untouched([s]),
    ];
    run_all(cases);
}

#[test]
fn paths_that_are_not_session_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("session.yaml");
    hostile_support::mkfifo(&fifo);
    let cases = vec![
        Case::new("check-dev-zero", ["check", "/dev/zero"]).expect(["/dev/zero", "regular file"]),
        Case::new(
            "check-directory",
            ["check".as_ref(), dir.path().as_os_str()],
        )
        .expect(["directory"])
        .untouched([dir.path()]),
        Case::new("check-fifo", ["check".as_ref(), fifo.as_os_str()])
            .expect(["session.yaml", "regular file"])
            .untouched([dir.path()]),
        Case::new(
            "export-fifo",
            [
                "export".as_ref(),
                fifo.as_os_str(),
                "--format".as_ref(),
                "csv".as_ref(),
            ],
        )
        .expect(["session.yaml", "regular file"])
        .untouched([dir.path()]),
        Case::new(
            "sweep-session-fifo",
            ["sweep".as_ref(), "--session".as_ref(), fifo.as_os_str()],
        )
        .expect(["session.yaml", "regular file"])
        .untouched([dir.path()]),
        Case::new("check-missing", ["check", "/nonexistent/x.yaml"])
            .expect(["/nonexistent/x.yaml"]),
    ];
    run_all(cases);
}

/// The harness itself: it must flag an accepted input, a missing word and a
/// changed file, or every other case here proves nothing.
#[test]
fn the_harness_notices_what_goes_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::copy(repo("sessions/ioi-demo.yaml"), &s).unwrap();
    let out = dir.path().join("out.csv");
    std::fs::write(&out, "keep me").unwrap();

    let accepted = Case::new("accepted", ["check".as_ref(), s.as_os_str()]).expect(["ok"]);
    let wrong = hostile_support::check(&accepted);
    assert!(wrong[0].contains("exit status 0"), "{wrong:?}");

    let unsaid = Case::new("unsaid", ["check", "/nonexistent/x.yaml"]).expect(["sunflower"]);
    let wrong = hostile_support::check(&unsaid);
    assert!(wrong[0].contains("sunflower"), "{wrong:?}");

    let args = [
        "export".as_ref(),
        s.as_os_str(),
        "--sweep".as_ref(),
        "0".as_ref(),
        "--format".as_ref(),
        "csv".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    let changed = Case::new("changed", args).succeeds().untouched([&out]);
    let wrong = hostile_support::check(&changed);
    assert!(wrong[0].contains("out.csv changed"), "{wrong:?}");
}

/// Data loss: an output path that is an input, or any existing session, is
/// refused, however it is spelled, and before anything runs.
#[test]
fn outputs_never_overwrite_inputs_or_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("s.yaml");
    std::fs::copy(repo("sessions/ioi-demo.yaml"), &s).unwrap();
    let other = d.join("other.yaml");
    std::fs::copy(repo("sessions/facts-demo.yaml"), &other).unwrap();
    let no_ext = d.join("session-without-extension");
    std::fs::copy(repo("sessions/induction-demo.yaml"), &no_ext).unwrap();
    let link = d.join("link.yaml");
    std::os::unix::fs::symlink(&s, &link).unwrap();
    let hard = d.join("hard.yaml");
    std::fs::hard_link(&s, &hard).unwrap();
    let sp = s.to_str().unwrap().to_string();
    let dotted = format!("{}/./s.yaml", d.display());
    let dotdot = format!(
        "{}/../{}/s.yaml",
        d.display(),
        d.file_name().unwrap().to_str().unwrap()
    );
    let outs: Vec<(&str, String)> = vec![
        ("same", sp.clone()),
        ("dotted", dotted),
        ("dotdot", dotdot),
        ("symlink", link.to_str().unwrap().into()),
        ("hardlink", hard.to_str().unwrap().into()),
        ("other-session", other.to_str().unwrap().into()),
        ("session-no-extension", no_ext.to_str().unwrap().into()),
    ];
    let mut cases = vec![];
    for (name, out) in &outs {
        for fmt in ["csv", "json", "svg"] {
            cases.push(
                Case::new(
                    format!("export-{fmt}-out-{name}"),
                    ["export", &sp, "--sweep", "0", "--format", fmt, "--out", out],
                )
                .expect(["--out", "another file"])
                .untouched([d]),
            );
        }
        for fmt in ["json", "csv", "table"] {
            cases.push(
                Case::new(
                    format!("sweep-session-{fmt}-out-{name}"),
                    [
                        "sweep",
                        "--session",
                        &sp,
                        "--rerun-stale",
                        "--format",
                        fmt,
                        "--out",
                        out,
                    ],
                )
                .expect(["--out", "another file"])
                .untouched([d]),
            );
        }
        cases.push(
            Case::new(
                format!("sweep-out-{name}"),
                sweep(&["--target", "resid_pre", "--out", out]),
            )
            .expect(["--out", "another file"])
            .untouched([d]),
        );
    }
    run_all(cases);
}

/// A model file given as a path is an input too.
#[test]
fn a_sweep_never_writes_over_its_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("model.gguf");
    std::fs::copy(repo("tests/fixtures/llama-tiny-gguf/model.gguf"), &gguf).unwrap();
    let g = gguf.to_str().unwrap();
    let cases = vec![Case::new(
        "sweep-out-model",
        [
            "sweep",
            "--model",
            g,
            "--clean",
            "a b",
            "--corrupted",
            "a c",
            "--answer",
            "a",
            "--wrong",
            "b",
            "--target",
            "resid_pre",
            "--out",
            g,
        ],
    )
    .expect(["--out", "model.gguf", "another file"])
    .untouched([dir.path()])];
    run_all(cases);
}

/// Every argument that sizes something is bounded: 0, negative, huge, NaN,
/// not a number and empty are refused with the range, before a model loads.
#[test]
fn sizes_from_arguments_are_bounded() {
    let bad = [
        ("zero", "0"),
        ("negative", "-1"),
        ("huge", "18446744073709551616"),
        ("u64-max", "18446744073709551615"),
        ("billion", "1000000000"),
        ("nan", "NaN"),
        ("float", "2.5"),
        ("word", "ten"),
        ("empty", ""),
    ];
    let mut cases = vec![];
    for (flag, range) in [
        ("--samples", "from 1 to 10000"),
        ("--window", "from 1 to 4096"),
        ("--max-batch-mem", "from 1 to 1048576"),
    ] {
        for (what, v) in bad {
            let extra = ["--target", "trace_mlp", "--corruption", "gaussian", flag, v];
            cases.push(
                Case::new(format!("sweep{flag}-{what}"), sweep(&extra)).expect([flag, range]),
            );
            let mut bench = sweep(&extra);
            bench[0] = "sweep".into();
            bench.insert(0, "bench".into());
            cases.push(Case::new(format!("bench-sweep{flag}-{what}"), bench).expect([flag, range]));
        }
    }
    for (what, v) in [
        ("zero", "0"),
        ("negative", "-0.5"),
        ("nan", "NaN"),
        ("inf", "inf"),
        ("overflow", "1e39"),
        ("word", "loud"),
    ] {
        let extra = [
            "--target",
            "resid_pre",
            "--corruption",
            "gaussian",
            "--noise-scale",
            v,
        ];
        cases.push(
            Case::new(format!("sweep--noise-scale-{what}"), sweep(&extra))
                .expect(["--noise-scale", "positive finite"]),
        );
    }
    for (what, v) in [
        ("negative", "1,-2"),
        ("huge", "99999999999"),
        ("word", "first"),
    ] {
        let extra = [
            "--target",
            "resid_pre",
            "--corruption",
            "zero",
            "--noise-positions",
            v,
        ];
        cases.push(
            Case::new(format!("sweep--noise-positions-{what}"), sweep(&extra))
                .expect(["--noise-positions", "whole number"]),
        );
    }
    for (what, v) in [("beyond-prompt", "14"), ("far", "1048575")] {
        let extra = [
            "--target",
            "resid_pre",
            "--corruption",
            "zero",
            "--noise-positions",
            v,
        ];
        cases.push(
            Case::new(format!("sweep--noise-positions-{what}"), sweep(&extra))
                .expect([v, "outside the prompt"]),
        );
    }
    for (what, v) in bad {
        cases.push(
            Case::new(
                format!("run--top-k-{what}"),
                ["run", "-p", "mary", "--top-k", v],
            )
            .expect(["--top-k", "from 1 to 1048576"]),
        );
    }
    let s = repo("sessions/ioi-demo.yaml");
    let s = s.to_str().unwrap();
    for (what, v) in [
        ("negative", "-1"),
        ("huge", "18446744073709551616"),
        ("nan", "NaN"),
    ] {
        cases.push(
            Case::new(
                format!("export--sweep-{what}"),
                ["export", s, "--format", "csv", "--sweep", v],
            )
            .expect(["--sweep", v])
            .untouched([s]),
        );
    }
    run_all(cases);
}

/// Unknown devices, dtypes and model sources, missing and clashing
/// arguments: each named, with what to give instead.
#[test]
fn clear_words_for_bad_choices() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("model.gguf");
    hostile_support::mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap().to_string();
    let s = repo("sessions/ioi-demo.yaml");
    let s = s.to_str().unwrap();
    let target = ["--target", "resid_pre"];
    // The base sweep names --model demo --device cpu; a case that gives its
    // own drops those (clap refuses an argument given twice).
    let with = |extra: &[&str]| {
        let mut a = sweep(&[&target[..], extra].concat());
        if extra.iter().any(|x| *x == "--model" || *x == "--device") {
            a.drain(1..5);
        }
        a
    };
    let cases = vec![
        Case::new("sweep-device", with(&["--device", "tpu"])).expect(["tpu", "cpu"]),
        Case::new("sweep-device-index", with(&["--device", "cuda:99"])).expect(["cuda:99"]),
        Case::new("sweep-dtype", with(&["--dtype", "f8"])).expect(["f8", "f32"]),
        Case::new("sweep-random-preset", with(&["--model", "random:nope"]))
            .expect(["nope", "gpt2-tiny"]),
        Case::new("sweep-model-dev-zero", with(&["--model", "/dev/zero"])).expect(["/dev/zero"]),
        Case::new("sweep-model-fifo", with(&["--model", &fifo]))
            .expect(["model.gguf"])
            .untouched([d]),
        Case::new(
            "sweep-model-empty-dir",
            with(&["--model", d.to_str().unwrap()]),
        )
        .expect(["config.json"])
        .untouched([d]),
        Case::new(
            "sweep-model-missing",
            with(&["--model", "/nonexistent/model.gguf"]),
        )
        .expect(["/nonexistent/model.gguf"]),
        Case::new("sweep-nothing", ["sweep"]).expect(["--clean", "--session"]),
        Case::new(
            "sweep-no-corrupted",
            [
                "sweep",
                "--clean",
                "a",
                "--answer",
                "a",
                "--wrong",
                "b",
                "--target",
                "resid_pre",
            ],
        )
        .expect(["--corrupted", "gaussian"]),
        Case::new("sweep-write-without-session", with(&["--write"]))
            .expect(["--write", "--session"]),
        Case::new(
            "sweep-session-and-clean",
            ["sweep", "--session", s, "--clean", "x"],
        )
        .expect(["--session", "--clean"])
        .untouched([s]),
        Case::new(
            "sweep-unknown-word-answer",
            [
                "sweep",
                "--clean",
                CLEAN,
                "--corrupted",
                CORRUPTED,
                "--answer",
                "Mary",
                "--wrong",
                "john",
                "--target",
                "resid_pre",
            ],
        )
        .expect(["Mary", "mary"]),
        Case::new(
            "check-load-model-device",
            ["check", "--load-model", "--device", "tpu", s],
        )
        .expect(["tpu"])
        .untouched([s]),
        Case::new(
            "check-load-model-dtype",
            ["check", "--load-model", "--dtype", "f8", s],
        )
        .expect(["f8"])
        .untouched([s]),
        Case::new("check-nothing", ["check"]).expect(["FILE"]),
        Case::new("export-no-format", ["export", s])
            .expect(["--format"])
            .untouched([s]),
        Case::new("run-empty-prompt", ["run", "-p", ""]).expect(["prompt"]),
        Case::new("run-model-fifo", ["run", "-p", "mary", "--model", &fifo])
            .expect(["model.gguf"])
            .untouched([d]),
        Case::new("unknown-subcommand", ["frobnicate"]).expect(["frobnicate"]),
    ];
    run_all(cases);
}

/// An output path that cannot be written is named with the fix, and no
/// partial file is left.
#[test]
fn unwritable_outputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = repo("sessions/ioi-demo.yaml");
    let s = s.to_str().unwrap();
    let missing = d.join("no-such-dir/out.csv");
    let export = |out: &str| -> Vec<String> {
        ["export", s, "--sweep", "0", "--format", "csv", "--out", out]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let cases = vec![
        Case::new("export-out-directory", export(d.to_str().unwrap()))
            .expect(["--out", "is a directory", "sweep.csv"])
            .untouched([d]),
        Case::new("export-out-missing-dir", export(missing.to_str().unwrap()))
            .expect(["no-such-dir", "does not exist"])
            .untouched([d]),
        // Devices are written in place, never replaced by a renamed file
        // (as root that replaced /dev/full itself).
        Case::new("export-out-dev-full", export("/dev/full"))
            .expect(["/dev/full", "No space left"])
            .untouched(["/dev/full"]),
        Case::new("export-out-dev-null", export("/dev/null"))
            .succeeds()
            .untouched(["/dev/null"]),
        Case::new(
            "sweep-out-directory",
            sweep(&["--target", "resid_pre", "--out", d.to_str().unwrap()]),
        )
        .expect(["--out", "is a directory"])
        .untouched([d]),
    ];
    run_all(cases);
}
