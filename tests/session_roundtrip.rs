//! Sessions survive saving: every example in `sessions/` loads, saves and
//! loads again unchanged; awkward strings and floats (NaN, infinities,
//! subnormals, -0.0) come back bit for bit; the diff-friendly layout is
//! really used; saves are atomic and keep permissions and symlinks; UI
//! state is repaired, not refused.

mod session_support;

use std::path::Path;

use patchbench::session::{self, io, Session, Severity};
use session_support::{ioi_pair, repo, same, same_bits, session_with_result, Xs};

fn roundtrip(s: &Session) -> (String, Session) {
    let text = session::to_yaml(s);
    let back = session::parse_str(&text, Path::new("(memory)"))
        .unwrap_or_else(|e| panic!("{e}\n--- text ---\n{text}"))
        .session;
    (text, back)
}

#[test]
fn every_example_session_loads_saves_and_loads_again_unchanged() {
    let dir = repo("sessions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sessions/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected example sessions in {dir:?}");
    let tmp = tempfile::tempdir().unwrap();
    for f in files {
        let loaded = session::load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{f:?}: {:?}", loaded.warnings);
        let copy = tmp.path().join(f.file_name().unwrap());
        session::save(&loaded.session, &copy).unwrap();
        let again = session::load(&copy).unwrap().session;
        assert!(
            same(&loaded.session, &again),
            "{f:?} changed on a round trip"
        );
        assert!(
            same_bits(&loaded.session, &again),
            "{f:?}: float bits changed"
        );
        // Saving is deterministic: a second save writes the same bytes.
        let first = std::fs::read(&copy).unwrap();
        session::save(&again, &copy).unwrap();
        assert_eq!(first, std::fs::read(&copy).unwrap(), "{f:?}");
    }
}

#[test]
fn an_example_stores_results_so_heatmaps_show_without_a_model() {
    let s = session::load(&repo("sessions/factual-recall-smollm2.yaml"))
        .unwrap()
        .session;
    assert!(s.sweeps.len() >= 3);
    for e in &s.sweeps {
        let r = e.result.as_ref().expect("stored result");
        assert_eq!(r.result.n_cells(), r.result.metrics["logit_diff"].len());
    }
    let targets: Vec<String> = s.sweeps.iter().map(|e| e.spec.target.to_string()).collect();
    assert!(targets.contains(&"trace_hidden".to_string()));
    assert!(targets.contains(&"trace_mlp".to_string()));
}

#[test]
fn nan_infinities_and_subnormals_round_trip_bit_for_bit() {
    let s = session_with_result(&[3, 17], 7);
    let (text, back) = roundtrip(&s);
    assert!(text.contains(".nan"), "NaN cells are written as .nan");
    assert!(text.contains(".inf"));
    assert!(same(&s, &back));
    assert!(same_bits(&s, &back));
}

#[test]
fn results_are_laid_out_one_heatmap_row_per_line() {
    let s = session_with_result(&[4, 5], 3);
    let text = session::to_yaml(&s);
    assert!(text.contains("shape: [4, 5]"), "{text}");
    // Each metric is a flow list broken after every row of 5 values.
    let kl = text.split("kl: [\n").nth(1).expect("kl as a flow list");
    let rows: Vec<&str> = kl.lines().take(4).collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(
            r.matches(',').count() + usize::from(r.ends_with(']')),
            5,
            "{r:?}"
        );
    }
    assert!(rows[3].ends_with(']'));
    // The human parts come before the bulky results.
    let pos = |k: &str| text.find(k).unwrap_or_else(|| panic!("{k} in {text}"));
    assert!(pos("prompts:") < pos("notes:") && pos("notes:") < pos("sweeps:"));
    assert!(
        text.contains("notes: |\n  seed 3\n  second line\n"),
        "{text}"
    );
}

#[test]
fn awkward_strings_round_trip_in_the_custom_layout() {
    let tricky = [
        "",
        " ",
        " Mary",
        "Mary ",
        "yes",
        "no",
        "null",
        "~",
        "1.0",
        "0x1F",
        ".nan",
        "-",
        "- item",
        "a: b",
        "#hash",
        "a #b",
        "'",
        "\"",
        "'\"'",
        "[x]",
        "{y}",
        "a, b",
        "*alias",
        "&anchor",
        "!tag",
        "%d",
        "@",
        "`",
        "tab\there",
        "line\nbreak",
        "\n",
        "\n\nx\n\n",
        "  indented\nfirst",
        "trailing  \n",
        "\r\n",
        "\u{feff}bom",
        "\u{2028}ls",
        "nul\0",
        "ünïcødé",
        "日本語",
        "🦀",
        "\u{7f}",
        "\\",
        "C:\\path",
    ];
    let mut rng = Xs(99);
    let mut strings: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
    let alphabet: Vec<char> = " \n\t:#-,[]{}'\"\\|>*&!%@`?aZ0é🦀".chars().collect();
    for _ in 0..300 {
        let len = (rng.next() % 12) as usize;
        strings.push(
            (0..len)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect(),
        );
    }
    for (i, text) in strings.iter().enumerate() {
        let mut s = session_with_result(&[2, 3], i as u64 + 1);
        s.prompts[0].clean = format!("x{text}");
        s.prompts[0].answer = format!("{text}a");
        s.prompts[0].wrong = format!("{text}b");
        s.notes = text.clone();
        if let Some(r) = s.sweeps[0].result.as_mut() {
            r.clean_tokens.strings[0] = text.clone();
        }
        let (yaml, back) = roundtrip(&s);
        assert!(same(&s, &back), "{text:?} did not round-trip:\n{yaml}");
        // The patchbench layout, not the plain fallback.
        assert!(
            yaml.contains("shape: [2, 3]"),
            "{text:?} fell back:\n{yaml}"
        );
    }
}

#[test]
fn a_hand_written_minimal_session_gets_defaults() {
    let text =
        "version: 1\nmodel: {source: demo}\nprompts:\n- {clean: a b, answer: ' x', wrong: ' y'}\n";
    let s = session::parse_str(text, Path::new("min.yaml"))
        .unwrap()
        .session;
    assert_eq!(s.ui, session::UiState::default());
    assert!(s.sweeps.is_empty() && s.notes.is_empty() && s.prepend_bos.is_none());
    let out = session::to_yaml(&s);
    assert!(
        out.starts_with("version: 1\nmodel:\n  source: demo\n"),
        "{out}"
    );
    assert!(out.contains("ui:\n  selected_sweep: 0"));
}

#[test]
fn out_of_range_ui_state_is_clamped_with_warnings() {
    let mut s = session_with_result(&[4, 5], 1);
    s.ui.selected_sweep = 9;
    s.ui.selected_pair = 3;
    s.ui.metric = "accuracy".into();
    let text = session::to_yaml(&s).replace("cell: []", "cell: [2, 99]");
    let loaded = session::parse_str(&text, Path::new("ui.yaml")).unwrap();
    let ui = &loaded.session.ui;
    assert_eq!(ui.selected_sweep, 1);
    assert_eq!(ui.selected_pair, 0);
    assert_eq!(ui.metric, "logit_diff_normalized");
    let fields: Vec<&str> = loaded.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        ["ui.selected_sweep", "ui.selected_pair", "ui.metric"]
    );
    assert!(loaded
        .warnings
        .iter()
        .all(|w| w.severity == Severity::Warning));

    // The cell is checked against the selected sweep's result shape.
    let mut s = session_with_result(&[4, 5], 1);
    s.ui.cell = vec![2, 99];
    let loaded = session::parse_str(&session::to_yaml(&s), Path::new("ui.yaml")).unwrap();
    assert_eq!(loaded.session.ui.cell, vec![2, 4]);
    assert_eq!(loaded.warnings[0].field, "ui.cell");
}

#[cfg(unix)]
#[test]
fn saving_keeps_permissions_and_symlinks_and_leaves_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.yaml");
    let s = Session::new("demo", ioi_pair());
    session::save(&s, &real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut s2 = s.clone();
    s2.notes = "edited through the link".into();
    session::save(&s2, &link).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(session::load(&real).unwrap().session.notes, s2.notes);
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn save_as_refuses_to_overwrite_unless_asked_and_creates_directories() {
    let dir = tempfile::tempdir().unwrap();
    let s = Session::new("demo", ioi_pair());
    let p = dir.path().join("new/sub/s.yaml");
    session::save_as(&s, &p, false).unwrap();
    let e = session::save_as(&s, &p, false).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    session::save_as(&s, &p, true).unwrap();
    let e = session::save(&s, dir.path()).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    // A save into a missing directory fails cleanly (save_as creates it).
    let e = session::save(&s, &dir.path().join("missing/s.yaml")).unwrap_err();
    assert!(e.to_string().contains("cannot write"), "{e}");
}

#[test]
fn write_atomic_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.yaml");
    io::write_atomic(&p, b"version: 1\n").unwrap();
    io::write_atomic(&p, b"short").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"short");
}
