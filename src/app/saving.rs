//! Saving: the save and save-as commands, the default file name of a new
//! session, and the quiet autosave. Used by `update` (keys, the quit
//! dialog) and by `panes` (saving while a field is edited).

use std::path::PathBuf;
use std::time::SystemTime;

use crate::session::time::rfc3339;

use super::command::{Command, SaveKind};
use super::prompts::line_editor;
use super::sessions::{file_safe, to_session};
use super::state::{AppState, Mode, Popup};

/// A default file name for a new session: `<model>-<time>.yaml` in the sessions directory.
pub(crate) fn default_path(s: &AppState) -> PathBuf {
    let stamp: String = rfc3339(SystemTime::now())
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    let name = format!(
        "{}-{}-{}.yaml",
        file_safe(&s.model.load.source),
        &stamp[..8],
        &stamp[8..14]
    );
    s.session.dir.clone().unwrap_or_default().join(name)
}

pub(crate) fn save(s: &mut AppState, out: &mut Vec<Command>) {
    match s.session.path.clone() {
        Some(path) => save_to(s, path, out),
        None => save_as(s),
    }
}

/// Saves to `path`: over the session's own file, else as a new file that
/// must not replace another without asking.
pub(crate) fn save_to(s: &AppState, path: PathBuf, out: &mut Vec<Command>) {
    let kind = if s.session.path.as_ref() == Some(&path) {
        SaveKind::Save
    } else {
        SaveKind::SaveAs { overwrite: false }
    };
    out.push(Command::Save {
        path,
        session: Box::new(to_session(s)),
        kind,
    });
}

pub(crate) fn save_as(s: &mut AppState) {
    let path = s.session.path.clone().unwrap_or_else(|| default_path(s));
    s.popup = Some(Popup::SaveAs {
        input: Box::new(line_editor(&path.display().to_string())),
    });
    s.mode = Mode::Edit;
}

pub(crate) fn autosave(s: &mut AppState, out: &mut Vec<Command>) {
    if let (true, Some(path)) = (s.session.dirty, s.session.autosave.clone()) {
        out.push(Command::Save {
            path,
            session: Box::new(to_session(s)),
            kind: SaveKind::Autosave,
        });
    }
}
