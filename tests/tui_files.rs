//! Keymap and theme files are user files: a FIFO, a device or a directory
//! is refused at once (never a hang), a BOM is accepted, a broken file is
//! reported in a popup that the model's loading message does not replace,
//! and no keymap can take away every way to quit.

mod app_support;

use std::path::Path;

use app_support::*;
use patchbench::app::messages::WorkerMsg;
use patchbench::app::state::Popup;
use patchbench::app::{Action, Intent};
use patchbench::tui::keymap::{Context, Key, Keymap};
use patchbench::tui::run::{initial_state, TuiOptions};
use patchbench::tui::theme::{ColorMode, Theme};

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn key(s: &str) -> Key {
    Key::parse(s).unwrap()
}

const PANES: [Context; 4] = [
    Context::Prompts,
    Context::Settings,
    Context::Heatmap,
    Context::Drill,
];

/// Whether some key quits from every pane.
fn quit_reachable_everywhere(k: &Keymap) -> bool {
    PANES.iter().all(|&pane| {
        ["q", "ctrl-c", "Q", "x"]
            .iter()
            .any(|s| k.lookup(&[pane, Context::Global], &key(s)) == Some(Intent::Quit))
    })
}

#[test]
fn a_fifo_or_a_directory_as_keymap_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("keymap.yaml"));
    let (k, warn) = Keymap::load(Some(dir.path()));
    let warn = warn.expect("a warning");
    assert!(
        warn.contains("FIFO") && warn.contains("keymap.yaml"),
        "{warn}"
    );
    assert_eq!(k.lookup(&[Context::Global], &key("q")), Some(Intent::Quit));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keymap.yaml")).unwrap();
    let warn = Keymap::load(Some(dir.path())).1.expect("a warning");
    assert!(warn.contains("is a directory"), "{warn}");
}

#[test]
fn a_keymap_with_a_bom_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keymap.yaml"),
        "\u{feff}global:\n  R: run_sweep\n",
    )
    .unwrap();
    let (k, warn) = Keymap::load(Some(dir.path()));
    assert_eq!(warn, None);
    assert_eq!(
        k.lookup(&[Context::Global], &key("R")),
        Some(Intent::RunSweep)
    );
}

#[test]
fn themes_from_devices_and_fifos_are_refused_and_a_bom_is_accepted() {
    let (t, warn) = Theme::load("/dev/zero", None, ColorMode::TrueColor);
    let warn = warn.expect("a warning");
    assert!(
        warn.contains("/dev/zero") && warn.contains("character device"),
        "{warn}"
    );
    assert_eq!(t.name, "dark");

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("t.yaml");
    mkfifo(&fifo);
    let warn = Theme::load(fifo.to_str().unwrap(), None, ColorMode::TrueColor)
        .1
        .expect("a warning");
    assert!(warn.contains("FIFO"), "{warn}");
    // A user theme in the themes folder that is a FIFO: the same.
    let warn = Theme::load("t", Some(dir.path()), ColorMode::TrueColor)
        .1
        .expect("a warning");
    assert!(warn.contains("FIFO"), "{warn}");

    let p = dir.path().join("bom.yaml");
    std::fs::write(&p, "\u{feff}inherits: light\n").unwrap();
    let (t, warn) = Theme::load(p.to_str().unwrap(), None, ColorMode::TrueColor);
    assert_eq!(warn, None);
    assert_eq!(t.name, p.to_str().unwrap());
}

#[test]
fn a_keymap_cannot_unbind_every_way_to_quit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keymap.yaml"),
        "global:\n  q: none\n  ctrl-c: none\n",
    )
    .unwrap();
    let (k, warn) = Keymap::load(Some(dir.path()));
    let warn = warn.expect("the repair is reported");
    assert!(warn.contains("no key was left for quit"), "{warn}");
    assert!(quit_reachable_everywhere(&k));

    // Quit bound only to a key that a pane binds to something else: that
    // pane would have no way out.
    let (k, notes) = Keymap::from_user_text(
        "global:\n  q: none\n  ctrl-c: none\n  Q: quit\nprompts:\n  Q: pair_add\n",
    )
    .unwrap();
    assert!(!notes.is_empty());
    assert!(quit_reachable_everywhere(&k));
    assert_eq!(
        k.lookup(&[Context::Prompts, Context::Global], &key("Q")),
        Some(Intent::PairAdd),
        "the user's own binding stays"
    );

    // Editing can always be left, the quit dialog answered.
    let (k, notes) = Keymap::from_user_text(
        "edit:\n  esc: none\n  enter: none\ndialog:\n  y: none\n  enter: none\n",
    )
    .unwrap();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(k.lookup(&[Context::Edit], &key("esc")), Some(Intent::Back));
    assert_eq!(k.lookup(&[Context::Dialog], &key("y")), Some(Intent::Yes));

    // A keymap that keeps a way out is left alone.
    let (_, notes) = Keymap::from_user_text("global:\n  q: none\n").unwrap();
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_configuration_problem_stays_visible_while_the_model_loads() {
    let opts = TuiOptions {
        device: "cpu".into(),
        weights: "f32".into(),
        ..Default::default()
    };
    let warning = "/home/u/.config/patchbench/keymap.yaml: unknown action \"fly\"";
    let mut s = initial_state(&opts, vec![warning.into()]).unwrap();
    for m in [
        WorkerMsg::ModelLoading {
            source: "demo".into(),
        },
        WorkerMsg::ModelFailed {
            source: "demo".into(),
            error: "no such model".into(),
        },
    ] {
        worker(&mut s, m);
        match &s.popup {
            Some(Popup::Message { text, .. }) => assert!(text.contains("fly"), "{text}"),
            other => panic!("the warning popup went away: {other:?}"),
        }
    }
    // Closing it shows the next one: the model's failure.
    act(&mut s, Action::Intent(Intent::Back));
    match &s.popup {
        Some(Popup::Message { text, .. }) => assert!(text.contains("no such model"), "{text}"),
        other => panic!("the model failure was lost: {other:?}"),
    }
    act(&mut s, Action::Intent(Intent::Back));
    assert!(s.popup.is_none());
}
