//! Resuming an interrupted workbench sweep.
//!
//! A sweep of a saved session keeps a checkpoint beside the session file
//! (`SESSION.sweep.ckpt`, the format of the CLI's `--out` checkpoints,
//! `patching::checkpoint`): the worker appends every finished batch and
//! deletes the file once the sweep is done, so a file that is still there
//! is a sweep that was cancelled, failed, or died with the workbench. Two
//! moments offer it in a popup: opening the session (the event loop looks
//! for the file and sends [`Action::SweepInterrupted`]) and starting a
//! sweep while one is known to be interrupted. Resuming runs the
//! interrupted spec again with the checkpoint, so only the missing batches
//! are computed and the result is the uninterrupted run's, bit for bit
//! (units, not cells, are recorded: `patching::work`); discarding deletes
//! the file (the next sweep starts over). The checkpoint's key still
//! guards it: a checkpoint of other prompts or another model is refused by
//! the worker with the reason, and discarding is offered again.
//!
//! [`Action::SweepInterrupted`]: super::Action::SweepInterrupted

use std::path::{Path, PathBuf};

use crate::patching::checkpoint::peek;
use crate::patching::SweepSpec;

use super::action::Intent;
use super::command::Command;
pub use super::messages::Interrupted;
use super::messages::SweepCheckpoint;
use super::state::{AppState, Level, Popup};

/// The checkpoint of the sweeps of the session saved at `session`.
pub fn checkpoint_path(session: &Path) -> PathBuf {
    let mut name = session.file_name().unwrap_or_default().to_os_string();
    name.push(".sweep.ckpt");
    session.with_file_name(name)
}

/// Looks for an interrupted sweep beside the session file (file I/O: the
/// event loop calls it, never `update`).
pub fn find(session: &Path) -> Option<Interrupted> {
    let path = checkpoint_path(session);
    let p = peek(&path)?;
    let spec: SweepSpec = serde_json::from_value(p.key.get("spec")?.clone()).ok()?;
    Some(Interrupted {
        path,
        spec,
        batches: Some(p.units),
    })
}

/// The checkpoint a sweep started now uses: beside the session file, if
/// the session has one. Starting a sweep takes the file over.
pub fn checkpoint_for(s: &mut AppState, resume: bool) -> Option<SweepCheckpoint> {
    s.session.interrupted = None;
    let path = checkpoint_path(s.session.path.as_deref()?);
    Some(SweepCheckpoint { path, resume })
}

/// An interrupted sweep was found: remember it and offer it.
pub fn found(s: &mut AppState, i: Interrupted) {
    s.session.interrupted = Some(i.clone());
    s.show_popup(Popup::ResumeSweep {
        interrupted: Box::new(i),
        requested: false,
    });
}

/// A sweep of this sitting ended without a result (cancelled or failed):
/// its checkpoint is left for resuming.
pub fn stopped(s: &mut AppState, sweep: usize) {
    let (Some(session), Some(v)) = (s.session.path.as_deref(), s.sweeps.get(sweep)) else {
        return;
    };
    s.session.interrupted = Some(Interrupted {
        path: checkpoint_path(session),
        spec: v.spec.clone(),
        batches: None,
    });
}

/// Whether starting a sweep must first ask about the interrupted one.
pub fn ask_before_running(s: &mut AppState) -> bool {
    let Some(i) = s.session.interrupted.clone() else {
        return false;
    };
    s.show_popup(Popup::ResumeSweep {
        interrupted: Box::new(i),
        requested: true,
    });
    true
}

/// A key in the popup; returns it to keep it open. `start(s, resume, out)`
/// starts the sweep of the settings' spec.
pub fn intent(
    s: &mut AppState,
    i: Intent,
    interrupted: Box<Interrupted>,
    requested: bool,
    out: &mut Vec<Command>,
    start: fn(&mut AppState, bool, &mut Vec<Command>),
) -> Option<Popup> {
    match i {
        Intent::Yes | Intent::Select => {
            // Resume: the interrupted spec, whatever was asked for.
            s.settings.spec = interrupted.spec.clone();
            start(s, true, out);
            None
        }
        Intent::No => {
            s.session.interrupted = None;
            if requested {
                // The new sweep deletes the old checkpoint as it starts.
                start(s, false, out);
            } else {
                out.push(Command::RemoveCheckpoint(interrupted.path.clone()));
                s.set_status(Level::Info, "discarded the interrupted sweep");
            }
            None
        }
        Intent::Back | Intent::Quit => None,
        _ => Some(Popup::ResumeSweep {
            interrupted,
            requested,
        }),
    }
}
