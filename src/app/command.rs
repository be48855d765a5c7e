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
    /// Write a session file (atomically); `autosave` copies are quiet.
    Save {
        path: PathBuf,
        session: Box<Session>,
        autosave: bool,
    },
    /// Delete the autosave copy (after a real save, or when discarded).
    RemoveAutosave,
    /// List the sessions in the sessions directory for the browser.
    ListSessions,
    LoadSession(PathBuf),
    Quit,
}
