//! Terminal safety: text from files (prompts, session paths, model sources,
//! error messages) never reaches the terminal as control characters. It is
//! rendered escaped (`\e[2J`), and messages are capped in length.

mod app_support;

use app_support::*;
use patchbench::app::messages::WorkerMsg;
use patchbench::app::prompts::PromptsState;
use patchbench::app::state::{Popup, StartOptions, MAX_STATUS_CHARS};
use patchbench::app::{example_pair, Action, AppState, Intent, Mode};
use patchbench::patching::PromptPair;
use patchbench::tui::keymap::Keymap;
use patchbench::tui::render::render;
use patchbench::tui::theme::{ColorMode, Theme};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const ESC_CLEAR: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}";

/// Draws `s` through a `TestBackend` terminal and returns every cell's
/// symbol, row by row.
fn draw(s: &AppState) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(120, 32)).unwrap();
    let theme = Theme::default_theme(ColorMode::TrueColor);
    let keymap = Keymap::defaults();
    t.draw(|f| {
        render(s, &theme, &keymap, f.area(), f.buffer_mut());
    })
    .unwrap();
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect()
        })
        .collect()
}

fn assert_no_controls(screen: &[String]) {
    for (y, line) in screen.iter().enumerate() {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "row {y} holds a control character: {line:?}"
        );
    }
}

fn hostile_pair() -> PromptPair {
    PromptPair {
        clean: format!("mary {ESC_CLEAR} gave"),
        ..example_pair("random:gpt2-tiny")
    }
}

#[test]
fn a_prompt_with_an_escape_sequence_renders_escaped() {
    let mut s = ready();
    s.prompts = PromptsState::new(&[hostile_pair()], None);
    let screen = draw(&s);
    assert_no_controls(&screen);
    assert!(
        screen.iter().any(|l| l.contains("\\e[2J\\e]0;pwned")),
        "{screen:#?}"
    );
    // While it is edited the text editor draws it itself: still no
    // control character reaches a cell.
    act(&mut s, Action::Intent(Intent::Edit));
    assert_eq!(s.mode, Mode::Edit);
    assert_no_controls(&draw(&s));
}

#[test]
fn a_session_name_model_and_error_with_escapes_render_escaped() {
    let mut s = AppState::new(StartOptions {
        load: patchbench::app::messages::LoadSpec {
            source: format!("evil{ESC_CLEAR}model"),
            device: "cpu".into(),
            weights: "f32".into(),
        },
        pairs: vec![hostile_pair()],
        autosave: None,
        sessions_dir: None,
        data_dir: None,
    });
    act(
        &mut s,
        Action::SessionLoaded {
            path: format!("/tmp/s{ESC_CLEAR}.yaml").into(),
            result: Err(format!("line 3: bad value {ESC_CLEAR}")),
        },
    );
    assert!(matches!(s.popup, Some(Popup::Message { .. })));
    let screen = draw(&s);
    assert_no_controls(&screen);
    let all = screen.join("\n");
    assert!(all.contains("bad value \\e[2J"), "{all}");
    assert!(all.contains("evil\\e[2J"), "the model source: {all}");
}

#[test]
fn messages_are_capped_and_one_line() {
    let mut s = ready();
    let huge = "x".repeat(100_000);
    worker(
        &mut s,
        WorkerMsg::ModelFailed {
            source: format!("/models/{huge}"),
            error: format!("cannot read\nsecond line {ESC_CLEAR} {huge}"),
        },
    );
    let status = &s.status.as_ref().unwrap().text;
    assert!(
        status.chars().count() <= MAX_STATUS_CHARS + 40,
        "{}",
        status.len()
    );
    assert!(!status.chars().any(|c| c.is_control()));
    match &s.popup {
        Some(Popup::Message { title, text }) => {
            assert!(title.chars().count() <= MAX_STATUS_CHARS + 40);
            // Newlines are kept in a popup's text, but nothing else.
            assert!(text.contains('\n') && text.contains("\\e[2J"), "{text:?}");
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
            assert!(text.len() < 4 * 1024, "{} bytes", text.len());
            assert!(text.ends_with("more characters)"), "clipped with a count");
        }
        other => panic!("expected a message popup, got {other:?}"),
    }
    assert_no_controls(&draw(&s));
}

#[test]
fn token_strings_from_a_session_render_escaped_in_the_heatmap() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    // The token under the cursor (the last position) comes from the file.
    let pos = s.heatmap.cursor[1];
    let stored = s.sweeps[0].stored.as_mut().expect("a stored result");
    stored.clean_tokens.strings[pos] = format!("tok{ESC_CLEAR}");
    s.focus = patchbench::app::Focus::Heatmap;
    let screen = draw(&s);
    assert_no_controls(&screen);
    let all = screen.join("\n");
    let readout = format!("pos {pos} \"tok\\e[2J");
    assert!(all.contains(&readout), "the cursor readout: {all}");
}
