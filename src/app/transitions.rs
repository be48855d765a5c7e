//! Steps that more than one transition takes: asking the worker to
//! tokenise or estimate, reacting to edited prompts, showing the selected
//! sweep. `update`, `panes` and `replies` all use these; keeping them here,
//! below all three, is what keeps those modules from importing each other
//! in a cycle (`update` dispatches to `panes` and `replies`, never back).

use super::command::Command;
use super::messages::{PairsInput, Request};
use super::sessions::mark_stale;
use super::settings::{EstimateState, SettingsState};
use super::state::AppState;

/// The prompt pairs as the worker takes them.
pub(crate) fn input(s: &AppState) -> PairsInput {
    let pairs = s.prompts.to_pairs();
    PairsInput {
        labels: s.dataset.labels_for(&pairs),
        pairs,
        prepend_bos: s.prompts.bos,
    }
}

pub(crate) fn request_tokenize(s: &mut AppState, out: &mut Vec<Command>) {
    if s.model.info().is_none() {
        return;
    }
    let job = s.jobs.new_id();
    s.jobs.tokenize = Some(job);
    out.push(Command::Worker(Request::Tokenize {
        job,
        input: input(s),
    }));
}

pub(crate) fn request_estimate(s: &mut AppState, out: &mut Vec<Command>) {
    if s.model.info().is_none() {
        return;
    }
    // A sweep that cannot run has no cost: the pane shows why instead.
    if let Err(e) = spec_problem(s) {
        s.jobs.estimate = None;
        s.settings.estimate = EstimateState::Failed(e);
        return;
    }
    let job = s.jobs.new_id();
    s.jobs.estimate = Some(job);
    s.settings.estimate = EstimateState::Pending;
    out.push(Command::Worker(Request::Estimate {
        job,
        input: input(s),
        spec: s.settings.spec.clone(),
    }));
}

/// The prompts or the BOS choice changed.
pub(crate) fn prompts_changed(s: &mut AppState, out: &mut Vec<Command>) {
    s.session.dirty = true;
    super::dataset_edits::follow_edits(s);
    mark_stale(s);
    request_tokenize(s, out);
    request_estimate(s, out);
}

/// Shows the selected sweep: its spec in the settings pane, its cells in the heatmap.
pub(crate) fn show_selected_sweep(s: &mut AppState) {
    if let Some(spec) = s
        .sweep()
        .map(|v| v.spec.clone())
        .filter(|sp| *sp != s.settings.spec)
    {
        let row = s.settings.row;
        s.settings = SettingsState::new(spec);
        s.settings.row = row.min(s.settings.rows().len() - 1);
    }
    if let Some(shape) = s.sweep().and_then(|v| v.grid()).map(|g| g.shape.to_vec()) {
        s.heatmap.fit(&shape);
    }
}

/// Whether the sweep in the settings can run on the loaded model: its
/// values are sane and the model has every hook its target patches (a
/// parallel-block model has no `hook_resid_mid`). `Ok` while no model is
/// loaded.
pub(crate) fn spec_problem(s: &AppState) -> Result<(), String> {
    let spec = &s.settings.spec;
    spec.validate().map_err(|e| e.to_string())?;
    match s.model.info() {
        Some(info) => spec.check_model(&info.config).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// "target T cannot run on this model: …" for the session's first sweep
/// whose target the loaded model lacks, if any (its stored result is still
/// shown; only running it is refused).
pub(crate) fn unavailable_summary(s: &AppState) -> Option<String> {
    let info = s.model.info()?;
    let mut bad = s
        .sweeps
        .iter()
        .filter_map(|v| v.spec.target.check_model(&info.config).err());
    let first = bad.next()?;
    let more = bad.count();
    let more = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    Some(format!("a sweep cannot run here{more}: {first}"))
}
