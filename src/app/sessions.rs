//! Sessions as the workbench uses them: the state ↔ [`Session`] mapping,
//! and a thin adapter over file operations (load, atomic save, autosave,
//! listing) that the event loop runs for `Command`s.
//!
//! The session layer (`crate::session`) owns the format; file operations
//! here go through it where it provides them, and otherwise do the minimum
//! (temporary file + rename) so the workbench works while it lands.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::patching::METRICS;
use crate::session::{ModelRef, Session, SweepEntry, UiState, SESSION_VERSION};

use super::grid::HeatmapState;
use super::prompts::PromptsState;
use super::settings::SettingsState;
use super::state::{AppState, SweepView};

/// One row of the session browser.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEntry {
    pub path: PathBuf,
    pub name: String,
    /// Modification time, `YYYY-MM-DD HH:MM` UTC.
    pub modified: String,
    pub model: String,
    pub sweeps: usize,
    pub pairs: usize,
}

/// `(sessions directory, autosave directory)` in the user data directory.
pub fn default_paths() -> (Option<PathBuf>, Option<PathBuf>) {
    (
        crate::session::sessions_dir().ok(),
        crate::session::autosave_dir().ok(),
    )
}

/// Reads and validates a session file (`crate::session::load`).
pub fn load_session(path: &Path) -> Result<Session, String> {
    crate::session::load(path)
        .map(|l| l.session)
        .map_err(|e| e.to_string())
}

/// Writes a session atomically, creating missing folders.
pub fn save_session(path: &Path, session: &Session) -> Result<(), String> {
    crate::session::save_as(session, path, true).map_err(|e| e.to_string())
}

/// The sessions in `dirs`, newest first, for the browser.
pub fn list_sessions(dirs: &[PathBuf]) -> Vec<SessionEntry> {
    crate::session::list_sessions(dirs)
        .into_iter()
        .map(|l| SessionEntry {
            modified: l
                .modified
                .map(|t| format_time(t)[..16].replace('T', " "))
                .unwrap_or_default(),
            model: l
                .model
                .unwrap_or_else(|| format!("(unreadable: {})", l.error.unwrap_or_default())),
            sweeps: l.n_sweeps,
            pairs: 0,
            name: l.name,
            path: l.path,
        })
        .collect()
}

/// The digest of what a sweep is computed from (spec, pairs, BOS choice);
/// stored with its result so later edits mark it stale.
pub fn inputs_digest(s: &AppState, spec: &crate::patching::SweepSpec) -> String {
    let pairs = s.prompts.to_pairs();
    let refs: Vec<&crate::patching::PromptPair> = pairs.iter().collect();
    crate::session::results::digest(spec, &refs, s.prompts.bos)
}

/// RFC 3339 UTC time of `t`, e.g. `2025-03-01T12:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now_rfc3339() -> String {
    format_time(SystemTime::now())
}

/// The state as a session.
pub fn to_session(s: &AppState) -> Session {
    Session {
        version: SESSION_VERSION,
        model: ModelRef {
            source: s.model.load.source.clone(),
            fingerprint: s.model.info().map(|i| i.fingerprint.clone()),
        },
        prepend_bos: s.prompts.bos,
        prompts: s.prompts.to_pairs(),
        sweeps: s
            .sweeps
            .iter()
            .map(|v| SweepEntry {
                spec: v.spec.clone(),
                pairs: None,
                result: v.stored.clone(),
            })
            .collect(),
        notes: s.session.notes.clone(),
        ui: UiState {
            selected_sweep: s.selected_sweep,
            cell: s.heatmap.cursor.clone(),
            metric: s.heatmap.metric_name().to_string(),
            selected_pair: s.prompts.selected,
        },
    }
}

/// Replaces the investigation in `s` with `session` (opened from `path`):
/// prompts, sweeps with their stored results, and the UI state.
pub fn apply_session(s: &mut AppState, session: Session, path: Option<PathBuf>) {
    s.prompts = PromptsState::new(&session.prompts, session.prepend_bos);
    s.prompts.selected = session
        .ui
        .selected_pair
        .min(s.prompts.pairs.len().saturating_sub(1));
    s.sweeps = session
        .sweeps
        .into_iter()
        .map(|e| SweepView {
            spec: e.spec,
            stored: e.result,
            partial: None,
        })
        .collect();
    s.selected_sweep = session
        .ui
        .selected_sweep
        .min(s.sweeps.len().saturating_sub(1));
    s.heatmap = HeatmapState {
        cursor: session.ui.cell,
        metric: METRICS
            .iter()
            .position(|m| *m == session.ui.metric)
            .unwrap_or(1),
        ..s.heatmap.clone()
    };
    if let Some(spec) = s.sweep().map(|v| v.spec.clone()) {
        s.settings = SettingsState::new(spec);
    }
    if let Some(shape) = s.sweep().and_then(|v| v.grid()).map(|g| g.shape.to_vec()) {
        s.heatmap.fit(&shape);
    }
    s.session.notes = session.notes;
    s.session.path = path;
    s.session.dirty = false;
    s.running = None;
    s.drill = None;
}
