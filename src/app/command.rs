//! Commands: what `update` asks the outside world to do. The event loop
//! carries them out (worker requests, file operations) and feeds the
//! outcomes back as actions, so `update` itself never blocks or fails.

use std::path::PathBuf;

use crate::session::Session;

use super::messages::{JobId, Request};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send a request to the worker.
    Worker(Request),
    /// Cancel sweep `job` between batches.
    Cancel(JobId),
    /// Cancel circuit search `job` between pieces of work.
    CancelCircuit(JobId),
    /// Cancel baselines job `job` between pairs.
    CancelBaselines(JobId),
    /// Write a session file (atomically).
    Save {
        path: PathBuf,
        session: Box<Session>,
        kind: SaveKind,
    },
    /// Delete the autosave copy (after a real save, or when discarded).
    RemoveAutosave,
    /// List the sessions in the sessions directory for the browser.
    ListSessions,
    LoadSession(PathBuf),
    /// Write an exported figure (atomically, creating its folder).
    Export {
        path: PathBuf,
        svg: String,
    },
    /// Delete an interrupted sweep's checkpoint (`resume`).
    RemoveCheckpoint(PathBuf),
    Quit,
}

/// How a session is written (`crate::session::io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    /// Over the session's own file (`session::save`).
    Save,
    /// Under a new name (`session::save_as`); an existing file is replaced
    /// only with `overwrite`, which the user confirms first.
    SaveAs { overwrite: bool },
    /// The quiet crash-recovery copy (`session::Autosave`); `path` is unused.
    Autosave,
}
