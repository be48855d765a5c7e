//! Pasted text through `update`: a bracketed paste is one action, inserted
//! whole into the field being edited with one retokenisation, and the keys
//! typed after it land after it.

mod app_support;

use app_support::*;
use patchbench::app::messages::Request;
use patchbench::app::{Action, Command, Intent, Mode};
use tui_textarea::{Input, Key};

fn typed(c: char) -> Action {
    Action::EditKey(Input {
        key: Key::Char(c),
        ..Default::default()
    })
}

fn tokenize_requests(cmds: &[Command]) -> usize {
    cmds.iter()
        .filter(|c| matches!(c, Command::Worker(Request::Tokenize { .. })))
        .count()
}

#[test]
fn a_long_paste_arrives_whole_and_the_keys_after_it_follow() {
    let mut s = ready();
    let before = s.prompts.to_pairs()[0].clean.clone();
    key(&mut s, Intent::Edit);
    assert_eq!(s.mode, Mode::Edit);
    let words: String = (0..2000).map(|i| format!("w{:03} ", i % 1000)).collect();
    let pasted = format!("{}\r\nend", &words[..10_000 - 5]);
    assert_eq!(pasted.chars().count(), 10_000);
    let cmds = act(&mut s, Action::Paste(pasted.clone()));
    assert_eq!(
        tokenize_requests(&cmds),
        1,
        "one retokenisation for the paste"
    );
    for c in ['x', 'y'] {
        act(&mut s, typed(c));
    }
    let clean = s.prompts.to_pairs()[0].clean.clone();
    let want = format!("{before}{}xy", pasted.replace("\r\n", " "));
    assert_eq!(clean.chars().count(), want.chars().count());
    assert_eq!(clean, want);
    assert_eq!(s.mode, Mode::Edit, "still editing");
}

#[test]
fn a_paste_outside_a_field_changes_nothing() {
    let mut s = ready();
    let before = s.prompts.to_pairs();
    let cmds = act(&mut s, Action::Paste("q r q".into()));
    assert!(cmds.is_empty(), "pasted letters are not commands: {cmds:?}");
    assert!(!s.quit);
    assert_eq!(s.prompts.to_pairs(), before);
    assert!(s.status.unwrap().text.contains("edit it first"));
}

#[test]
fn a_paste_into_save_as_goes_into_the_file_name() {
    let mut s = ready();
    key(&mut s, Intent::SaveAs);
    act(&mut s, Action::Paste("/tmp/pasted.yaml".into()));
    match &s.popup {
        Some(patchbench::app::state::Popup::SaveAs { input }) => {
            assert!(patchbench::app::prompts::editor_text(input).ends_with("/tmp/pasted.yaml"))
        }
        other => panic!("{other:?}"),
    }
}
