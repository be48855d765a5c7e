//! Sessions: investigations saved as YAML, resumed and shared.
//!
//! - `model`: the data (`Session`, `SweepEntry`, `StoredResult`, `UiState`);
//! - `io`: every read and write of session YAML — checked loading with
//!   precise errors, the diff-friendly layout of `emit`, atomic saves;
//! - `diagnose`, `validate`, `check`: parser errors with hints, semantic
//!   checks, and the every-problem report of `patchbench check`
//!   (`corruption_path` names the bad field inside a sweep's corruption);
//! - `results`: storing a finished sweep, staleness, the export report;
//! - `circuit`: circuit searches and their stored results, and their staleness;
//! - `dataset`: a session's dataset by path and digest, or inline;
//! - `autosave`: crash recovery; `dirs`: where sessions live and the
//!   browser's listing; `svg`: the heatmap figure; `time`: timestamps;
//!   `upgrade`: results stored before a metric existed, completed on load.
//!
//! Nothing here knows about the terminal; the TUI and the CLI call in.

pub mod autosave;
pub mod check;
pub mod circuit;
mod corruption_path;
pub mod dataset;
mod diagnose;
pub mod dirs;
mod emit;
pub mod error;
pub mod io;
pub mod model;
pub mod results;
pub mod svg;
pub mod time;
mod upgrade;
mod validate;

pub use autosave::{
    autosave_dir, find_autosave, find_autosaves, leftover_autosaves, Autosave, Recovery,
};
pub use check::{check_file, CheckReport};
pub use dirs::{data_dir, default_session_dirs, list_sessions, sessions_dir, SessionListing};
pub use error::{Problem, SessionError, Severity, MAX_SESSION_BYTES};
pub use io::{load, parse_str, save, save_as, to_yaml, write_atomic, Loaded};
pub use model::{
    ModelRef, Session, StoredResult, SweepEntry, UiState, READABLE_VERSIONS, SESSION_VERSION,
};
pub use results::{report, stale_results, staleness, store_result, Staleness};
pub use svg::heatmap_svg;

#[cfg(test)]
mod metrics_tests;
