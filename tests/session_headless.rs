//! Headless sessions through the real binary on the tiny GPT-2 fixture:
//! `sweep --session FILE --write` stores results that load without
//! recomputation and equal an in-process sweep; stale results are found
//! (another model, edited prompts) and rerun only when asked; `check`
//! validates; `export` writes the JSON contract, CSV and an SVG; model
//! sources may use `~` and paths relative to the session file.

mod session_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patchbench::model::loaded::LoadOptions;
use patchbench::model::{LoadedModel, ModelSource};
use patchbench::patching::prepare_pairs;
use patchbench::session::{self, results, Session, Staleness};
use session_support::repo;

fn bin(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_patchbench"));
    c.args(args).env("NO_COLOR", "1");
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixture() -> PathBuf {
    repo("tests/fixtures/gpt2-tiny")
}

fn tiny() -> LoadedModel {
    let opts = LoadOptions::cpu();
    LoadedModel::load(fixture().to_str().unwrap(), &opts).unwrap()
}

/// An IOI session on the fixture with three sweeps and no results.
fn write_session(dir: &Path, source: &str) -> PathBuf {
    let p = dir.join("ioi.yaml");
    let yaml = format!(
        r#"version: 1
model:
  source: {source}
prompts:
- clean: When Mary and John went to the store, John gave a drink to
  corrupted: When Mary and John went to the store, Mary gave a drink to
  answer: ' Mary'
  wrong: ' John'
notes: written by hand
sweeps:
- spec: {{target: resid_pre}}
- spec: {{target: head_out, direction: noise}}
- spec:
    target: trace_hidden
    corruption: {{kind: gaussian, positions: [1], samples: 3}}
"#
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

fn load(p: &Path) -> Session {
    session::load(p).unwrap_or_else(|e| panic!("{e}")).session
}

#[test]
fn sweep_session_write_stores_results_that_load_without_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_session(dir.path(), fixture().to_str().unwrap());
    let f = file.to_str().unwrap();

    let out = bin(&["sweep", "--session", f, "--write"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stored 3 result(s)"),
        "{}",
        text(&out.stderr)
    );

    let s = load(&file);
    assert_eq!(s.notes, "written by hand");
    let m = tiny();
    assert_eq!(s.model.fingerprint.as_deref(), Some(m.fingerprint.as_str()));
    assert!(results::stale_results(&s, Some(&m.fingerprint)).is_empty());
    // The stored numbers are the engine's, exactly.
    let pairs = prepare_pairs(&m.tokenizer, &s.prompts, None).unwrap();
    for e in &s.sweeps {
        let stored = e.result.as_ref().expect("every sweep has a result");
        let fresh = session_support::recompute(&m.model, &pairs, &e.spec);
        session_support::assert_same_metrics(&stored.result, &fresh, 0.0, "stored sweep");
        assert_eq!(stored.answer, " Mary");
        assert_eq!(
            stored.clean_tokens.strings,
            m.tokenizer.token_strs(&pairs[0].clean)
        );
    }

    // A second run finds nothing to do and leaves the file alone.
    let before = std::fs::read(&file).unwrap();
    let out = bin(&["sweep", "--session", f, "--write"], None);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("nothing to run"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Exports from the stored results, no model involved.
    let out = bin(&["export", f, "--sweep", "0", "--format", "json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "model",
        "target",
        "direction",
        "corruption",
        "clean_tokens",
        "corrupted_tokens",
        "answer",
        "wrong",
        "baselines",
        "axes",
        "shape",
        "metrics",
        "timing",
    ] {
        assert!(v.get(key).is_some(), "JSON export lacks {key}");
    }
    assert_eq!(v["answer"]["string"], " Mary");
    assert_eq!(v["target"], "resid_pre");
    let out = bin(&["export", f, "--sweep", "1", "--format", "csv"], None);
    let csv = text(&out.stdout);
    assert!(csv.starts_with("layer,head,logit_diff,"), "{csv}");
    let svg_path = dir.path().join("trace.svg");
    let out = bin(
        &[
            "export",
            f,
            "--sweep",
            "2",
            "--format",
            "svg",
            "--metric",
            "logit_diff",
            "--out",
            svg_path.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("trace_hidden · denoise · gaussian corruption — logit_diff"));
    assert!(svg.contains(">layer</text>") && svg.contains("position (clean token)"));
    assert!(svg.contains("> Mary</text>"), "token labels on the axis");
    assert!(svg.contains("linearGradient"), "colour bar");

    // Several sweeps and no --sweep: the error lists them.
    let out = bin(&["export", f, "--format", "csv"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("choose one with --sweep N"));
    assert!(text(&out.stderr).contains("2: trace_hidden denoise (result)"));

    let out = bin(&["check", f, "--load-model"], None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("ok: model"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn stale_results_are_found_and_rerun_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_session(dir.path(), fixture().to_str().unwrap());
    let f = file.to_str().unwrap();
    assert!(bin(&["sweep", "--session", f, "--write"], None)
        .status
        .success());
    let fp = tiny().fingerprint;

    // Another model (a different fingerprint) makes every result stale.
    let s = load(&file);
    let stale = results::stale_results(&s, Some("0123456789abcdef"));
    assert_eq!(stale.len(), 3);
    assert!(matches!(&stale[0].1, Staleness::ModelChanged { stored, .. } if *stored == fp));

    // Editing a prompt makes the results that use it stale, with no model.
    let mut edited = s.clone();
    edited.prompts[0].wrong = " Bob".into();
    let stale = results::stale_results(&edited, None);
    assert_eq!(stale.len(), 3);
    assert!(stale
        .iter()
        .all(|(_, why)| *why == Staleness::InputsChanged));
    // Notes and UI state are not inputs.
    let mut notes = s.clone();
    notes.notes = "more notes".into();
    notes.ui.selected_sweep = 2;
    assert!(results::stale_results(&notes, Some(&fp)).is_empty());

    // Edit one sweep's spec on disk: check reports it, sweep reruns it
    // only with --rerun-stale.
    let mut one = s.clone();
    one.sweeps[1].spec.direction = patchbench::patching::Direction::Denoise;
    session::save(&one, &file).unwrap();
    let out = bin(&["check", f], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout)
            .contains("sweeps[1].result: stale: the sweep's spec or prompts were edited"),
        "{}",
        text(&out.stdout)
    );
    let out = bin(&["sweep", "--session", f, "--write"], None);
    assert!(
        text(&out.stderr).contains("sweep 1: the stored result is stale"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(load(&file), one, "nothing rerun without --rerun-stale");
    let out = bin(&["sweep", "--session", f, "--write", "--rerun-stale"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stored 1 result(s)"),
        "{}",
        text(&out.stderr)
    );
    let rerun = load(&file);
    assert!(results::stale_results(&rerun, Some(&fp)).is_empty());
    assert_eq!(
        rerun.sweeps[0], one.sweeps[0],
        "fresh results are kept as they were"
    );
}

#[test]
fn sweep_session_without_write_prints_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_session(dir.path(), fixture().to_str().unwrap());
    let before = std::fs::read(&file).unwrap();
    let out = bin(&["sweep", "--session", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    assert!(text(&out.stderr).contains("add --write"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn sweep_arguments_are_checked() {
    let out = bin(&["sweep", "--target", "resid_pre"], None);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("missing --clean TEXT (or --dataset FILE), --answer TOKEN, --wrong TOKEN")
            && e.contains("--session FILE"),
        "{e}"
    );
    let out = bin(
        &["sweep", "--session", "x.yaml", "--target", "resid_pre"],
        None,
    );
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
    let out = bin(&["sweep", "--write"], None);
    assert!(!out.status.success());
    let out = bin(&["sweep", "--session", "/nonexistent/s.yaml"], None);
    assert!(text(&out.stderr).contains("/nonexistent/s.yaml: no such file"));
}

#[test]
fn a_sweep_whose_pairs_do_not_tokenise_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_session(dir.path(), fixture().to_str().unwrap());
    let mut s = load(&file);
    s.prompts.push(patchbench::patching::PromptPair {
        clean: "a much longer prompt than the other one, so the lengths differ".into(),
        corrupted: Some("short".into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    });
    s.sweeps[0].pairs = Some(vec![0]);
    s.sweeps[1].pairs = Some(vec![1]);
    s.sweeps[2].pairs = Some(vec![0]);
    session::save(&s, &file).unwrap();
    let f = file.to_str().unwrap();
    let out = bin(&["check", f, "--load-model"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains(
            "sweeps[1]: pair 1: the clean and corrupted prompts have different token lengths"
        ),
        "{}",
        text(&out.stdout)
    );
    let out = bin(&["sweep", "--session", f, "--write"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("1 of 3 sweeps failed"),
        "{}",
        text(&out.stderr)
    );
    let s = load(&file);
    let have: Vec<bool> = s.sweeps.iter().map(|e| e.result.is_some()).collect();
    assert_eq!(have, [true, false, true]);
}

#[test]
fn model_sources_may_be_relative_to_the_session_or_under_home() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("models/gpt2-tiny");
    std::fs::create_dir_all(&model_dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture().join(f), model_dir.join(f)).unwrap();
    }
    // Relative to the session file, run from elsewhere.
    let file = write_session(dir.path(), "models/gpt2-tiny");
    let out = bin(
        &["sweep", "--session", file.to_str().unwrap(), "--write"],
        Some(Path::new("/")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        load(&file).model.source,
        "models/gpt2-tiny",
        "the source string is kept"
    );

    // `~/...` expands to $HOME.
    let file = write_session(dir.path(), "~/models/gpt2-tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["sweep", "--session", file.to_str().unwrap(), "--write"])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let home = directories::BaseDirs::new()
        .unwrap()
        .home_dir()
        .to_path_buf();
    let e = ModelSource::parse("~/no-such-model.gguf")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&home.join("no-such-model.gguf").display().to_string()),
        "{e}"
    );
    assert!(ModelSource::parse("~user/x.gguf").is_err());
}
