//! The workbench's side of sessions: the state ↔ [`Session`] mapping, the
//! staleness marks of stored results, and where exports go.
//!
//! The session layer (`crate::session`) owns the format and every file
//! operation — loading with its repair warnings, atomic saves, autosave,
//! the browser's listing, the SVG figure; the event loop calls it for
//! `Command`s. Staleness is decided there too ([`stale_results`]): this
//! module only decides when to ask, and keeps the answer on each sweep so
//! rendering stays a pure read of the state.

use std::path::{Path, PathBuf};

use crate::patching::METRICS;
use crate::session::{
    stale_results, ModelRef, Session, StoredResult, SweepEntry, UiState, SESSION_VERSION,
};

use super::circuit_state::{CircuitState, CircuitView};
use super::grid::HeatmapState;
use super::prompts::PromptsState;
use super::settings::SettingsState;
use super::state::{AppState, SweepView};
use crate::patching::metrics::DEFAULT_METRIC;
use crate::session::circuit::CircuitEntry;
pub use crate::util::text::file_safe;

/// The state as a session.
pub fn to_session(s: &AppState) -> Session {
    Session {
        version: SESSION_VERSION,
        model: ModelRef {
            source: s.model.load.source.clone(),
            fingerprint: s
                .model
                .info()
                .map(|i| i.fingerprint.clone())
                .or_else(|| s.session.fingerprint.clone()),
        },
        prepend_bos: s.prompts.bos,
        // The whole set, also while the editor holds one pair alone.
        prompts: s.dataset.whole_pairs(&s.prompts.to_pairs()),
        dataset: s.session.dataset.clone(),
        sweeps: s
            .sweeps
            .iter()
            .map(|v| SweepEntry {
                spec: v.spec.clone(),
                pairs: v.pairs.clone(),
                result: v.stored.clone(),
            })
            .collect(),
        circuits: s
            .circuit
            .views
            .iter()
            .map(|v| CircuitEntry {
                spec: v.spec.clone(),
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
/// prompts, sweeps with their stored results, and the UI state. Stale
/// marks are left to the caller ([`mark_stale`]), which knows whether the
/// session's model is about to be loaded.
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
            stored: e.result,
            pairs: e.pairs,
            ..SweepView::new(e.spec)
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
            .unwrap_or(DEFAULT_METRIC.0),
        ..s.heatmap.clone()
    };
    if let Some(spec) = s.sweep().map(|v| v.spec.clone()) {
        s.settings = SettingsState::new(spec);
    }
    if let Some(shape) = s.sweep().and_then(|v| v.grid()).map(|g| g.shape.to_vec()) {
        s.heatmap.fit(&shape);
    }
    s.circuit = CircuitState {
        views: session
            .circuits
            .into_iter()
            .map(|e| CircuitView {
                spec: e.spec,
                stored: e.result,
                stale: None,
            })
            .collect(),
        ..CircuitState::default()
    };
    // The session's dataset, if it has one, is applied when read
    // (`dataset::opened`); its pairs are the prompts until then.
    s.dataset = Default::default();
    s.session.notes = session.notes;
    s.session.dataset = session.dataset;
    s.session.fingerprint = session.model.fingerprint;
    s.session.path = path;
    // Its own checkpoint, if any, is announced by the event loop.
    s.session.interrupted = None;
    s.session.dirty = false;
    s.running = None;
    s.drill = None;
}

/// Marks every stored result that cannot be trusted as current
/// ([`stale_results`]): computed with other weights than the loaded
/// model's (before a model is loaded: than the session recorded), or from
/// a spec, prompts or BOS choice edited since it ran. Clears the marks of
/// the rest. Returns the number of stale results.
///
/// Called when a session opens, when a model finishes loading, when the
/// prompts change and when a sweep finishes.
pub fn mark_stale(s: &mut AppState) -> usize {
    super::circuit_stale::mark_stale(s);
    // Lend the results to the session rather than cloning them: this runs
    // on every keystroke in a prompt.
    let results: Vec<Option<StoredResult>> = s.sweeps.iter_mut().map(|v| v.stored.take()).collect();
    let mut session = to_session(s);
    for (e, r) in session.sweeps.iter_mut().zip(results) {
        e.result = r;
    }
    let current = s.model.info().map(|i| i.fingerprint.as_str());
    let stale = stale_results(&session, current);
    for (v, e) in s.sweeps.iter_mut().zip(session.sweeps) {
        v.stored = e.result;
        v.stale = None;
    }
    let n = stale.len();
    for (i, why) in stale {
        if let Some(v) = s.sweeps.get_mut(i) {
            v.stale = Some(why);
        }
    }
    n
}

/// The inputs digest of a sweep of `spec` over `pairs` (a subset of the
/// whole set, or all) as the session will judge it when saved: the
/// dataset's digest when the session has a dataset, else the prompts.
pub fn inputs_of(
    s: &AppState,
    spec: &crate::patching::SweepSpec,
    pairs: Option<Vec<usize>>,
) -> String {
    let session = Session {
        dataset: s.session.dataset.clone(),
        prepend_bos: s.prompts.bos,
        prompts: s.dataset.whole_pairs(&s.prompts.to_pairs()),
        ..Session::new(&s.model.load.source, super::example_pair("demo"))
    };
    let entry = SweepEntry {
        spec: spec.clone(),
        pairs,
        result: None,
    };
    crate::session::results::inputs_digest(&session, &entry)
}

/// Where the export of the shown sweep's heatmap goes: beside the session
/// file, or in the data directory while the session is unsaved; named
/// after the session, the sweep and the metric, so exporting again
/// replaces the same figure.
pub fn export_path(s: &AppState) -> Option<PathBuf> {
    let v = s.sweep()?;
    let (dir, stem) = match &s.session.path {
        Some(p) => (
            p.parent().map(Path::to_path_buf).unwrap_or_default(),
            p.file_stem()?.to_string_lossy().into_owned(),
        ),
        None => (s.session.data_dir.clone()?, file_safe(&s.model.load.source)),
    };
    Some(dir.join(format!(
        "{stem}-sweep{}-{}-{}.svg",
        s.selected_sweep + 1,
        v.spec.target,
        s.heatmap.metric_name()
    )))
}
