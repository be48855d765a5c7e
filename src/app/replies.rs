//! Replies: worker messages and finished file operations. A reply to a job
//! the state no longer waits for (a superseded tokenisation, a cancelled
//! sweep, a closed drill-down) is dropped here.

use std::path::PathBuf;

use crate::session::{Loaded, StoredResult};

use super::command::{Command, SaveKind};
use super::messages::{LoadSpec, Request, WorkerMsg};
use super::sessions::{apply_session, mark_stale, to_session};
use super::settings::EstimateState;
use super::state::{AppState, Level, ModelState, Partial};
use super::transitions::{
    request_estimate, request_tokenize, show_selected_sweep, unavailable_summary,
};

pub(crate) fn worker(s: &mut AppState, m: WorkerMsg, out: &mut Vec<Command>) {
    match m {
        WorkerMsg::ModelLoading { source } => {
            s.model.state = ModelState::Loading;
            s.set_status(Level::Info, format!("loading model {source} …"));
        }
        WorkerMsg::ModelLoaded(info) => {
            let msg = format!(
                "model {} loaded in {:.0} ms ({} layers, {} heads, {})",
                info.source, info.load_ms, info.config.n_layers, info.config.n_heads, info.device
            );
            s.model.state = ModelState::Ready(info);
            let notes: Vec<String> = [stale_summary(s), unavailable_summary(s)]
                .into_iter()
                .flatten()
                .collect();
            if notes.is_empty() {
                s.set_status(Level::Info, msg);
            } else {
                s.set_status(Level::Warn, format!("{msg} · {}", notes.join(" · ")));
            }
            request_tokenize(s, out);
            request_estimate(s, out);
            if s.dataset.shown {
                super::dataset::measure(s, out);
            }
        }
        WorkerMsg::ModelFailed { source, error } => {
            s.model.state = ModelState::Failed(error.clone());
            s.set_status(Level::Error, format!("cannot load model {source}"));
            s.show_message(&format!("cannot load model {source}"), &error);
        }
        WorkerMsg::Tokenized { job, result } => {
            if s.jobs.tokenize == Some(job) {
                s.prompts.tokens = Some(result);
            }
        }
        WorkerMsg::Estimated { job, result } => {
            if s.jobs.estimate == Some(job) {
                s.settings.estimate = match result {
                    Ok(e) => EstimateState::Ready(e),
                    Err(e) => EstimateState::Failed(e),
                };
            }
        }
        WorkerMsg::SweepStarted { job, start } => {
            let Some(r) = s.running.as_ref().filter(|r| r.job == job) else {
                return;
            };
            let idx = r.sweep;
            let n: usize = start.shape.iter().product();
            let shape = start.shape.clone();
            if let Some(v) = s.sweeps.get_mut(idx) {
                v.partial = Some(Partial {
                    start: *start,
                    cells: vec![None; n],
                    baselines: None,
                });
            }
            if s.selected_sweep == idx {
                s.heatmap.fit(&shape);
            }
        }
        WorkerMsg::SweepProgress {
            job,
            done,
            total,
            elapsed,
            eta,
            finished,
            baselines,
        } => {
            let Some(r) = s.running.as_mut().filter(|r| r.job == job) else {
                return;
            };
            (r.done, r.total, r.elapsed, r.eta) = (done, total, elapsed, eta);
            let idx = r.sweep;
            if let Some(p) = s.sweeps.get_mut(idx).and_then(|v| v.partial.as_mut()) {
                p.baselines = Some(baselines);
                for (c, m) in finished {
                    if let Some(slot) = p.cells.get_mut(c) {
                        *slot = Some(m);
                    }
                }
            }
        }
        WorkerMsg::SweepDone {
            job,
            result,
            computed_at,
        } => {
            let Some(r) = s.running.take_if(|r| r.job == job) else {
                return;
            };
            let load_ms = s.model.info().map_or(0.0, |i| i.load_ms);
            let Some(v) = s.sweeps.get_mut(r.sweep) else {
                return;
            };
            let Some(p) = v.partial.take() else { return };
            let st = p.start;
            let msg = format!(
                "sweep done: {} cells, {} forward passes, {:.2} s",
                result.n_cells(),
                result.timing.forward_passes,
                result.timing.sweep_ms / 1e3
            );
            v.stored = Some(StoredResult {
                fingerprint: st.fingerprint,
                inputs: r.inputs.clone(),
                computed_at,
                load_ms,
                clean_tokens: st.clean_tokens,
                corrupted_tokens: st.corrupted_tokens,
                answer: st.answer,
                answer_id: st.answer_id,
                wrong: st.wrong,
                wrong_id: st.wrong_id,
                result: *result,
            });
            s.session.dirty = true;
            // Fresh, unless the prompts were edited while it ran.
            mark_stale(s);
            s.set_status(Level::Info, msg);
            show_selected_sweep(s);
            // A new result is shown plain, the cursor on its strongest effect.
            (s.heatmap.spread.pair, s.heatmap.spread.compare) = (None, None);
            super::spread_keys::refresh(s);
            super::spread_keys::cursor_to_strongest(s);
        }
        WorkerMsg::SweepFailed {
            job,
            error,
            cancelled,
        } => {
            let Some(r) = s.running.take_if(|r| r.job == job) else {
                return;
            };
            if let Some(v) = s.sweeps.get_mut(r.sweep) {
                v.partial = None;
            }
            super::resume::stopped(s, r.sweep);
            if cancelled {
                s.set_status(Level::Warn, "sweep cancelled");
            } else {
                s.set_status(Level::Error, format!("sweep failed: {error}"));
            }
        }
        WorkerMsg::Drilled { job, result } => {
            if let Some(d) = s.drill.as_mut().filter(|d| d.job == job) {
                d.result = Some(result.map(|b| *b));
            }
        }
        m @ (WorkerMsg::CircuitProgress { .. }
        | WorkerMsg::CircuitDone { .. }
        | WorkerMsg::CircuitFailed { .. }) => super::circuit::reply(s, m),
        m @ (WorkerMsg::BaselinesProgress { .. } | WorkerMsg::BaselinesDone { .. }) => {
            super::dataset::reply(s, m)
        }
        WorkerMsg::WorkerFailed {
            error,
            thread_stopped,
        } => worker_failed(s, error, thread_stopped, out),
    }
}

/// A dataset file was read: its pairs fill the editor.
pub(crate) fn dataset_opened(
    s: &mut AppState,
    name: String,
    result: Result<Box<crate::data::Dataset>, String>,
    out: &mut Vec<Command>,
) {
    match result {
        Ok(ds) => super::dataset::read(s, &ds, name, out),
        Err(e) => s.set_status(Level::Error, format!("cannot read the dataset {name}: {e}")),
    }
}

/// A job panicked: its own failure reply already moved the state on. The
/// message goes in a popup (a bug to report). If the thread itself
/// stopped, every job in flight is lost: they end here, and the model is
/// loaded again (the worker restarts its thread for the request).
fn worker_failed(s: &mut AppState, error: String, thread_stopped: bool, out: &mut Vec<Command>) {
    if thread_stopped {
        if let Some(r) = s.running.take() {
            if let Some(v) = s.sweeps.get_mut(r.sweep) {
                v.partial = None;
            }
        }
        s.circuit.running = None;
        if s.settings.estimate == EstimateState::Pending {
            s.settings.estimate = EstimateState::Failed(error.clone());
        }
        if let Some(d) = s.drill.as_mut().filter(|d| d.result.is_none()) {
            d.result = Some(Err(error.clone()));
        }
        s.jobs.estimate = None;
        s.jobs.tokenize = None;
        s.model.state = ModelState::Loading;
        out.push(Command::Worker(Request::Load(s.model.load.clone())));
    }
    s.set_status(Level::Error, "internal error (details in the popup)");
    s.show_message("internal error", &error);
}

/// "k of n stored results are stale: why", if any are (marking them).
fn stale_summary(s: &mut AppState) -> Option<String> {
    let n_stale = mark_stale(s);
    let circuits = super::circuit_stale::stale_summary(s);
    let Some(first) = s.sweeps.iter().find_map(|v| v.stale.as_ref()) else {
        return circuits;
    };
    let n = s.sweeps.iter().filter(|v| v.stored.is_some()).count();
    let more = if n_stale > 1 { " (and others)" } else { "" };
    let sweeps = format!("{n_stale} of {n} stored results stale: {first}{more}; r recomputes");
    Some(match circuits {
        Some(c) => format!("{sweeps} · {c}"),
        None => sweeps,
    })
}

/// Shows a loaded session (opened from `path`, or restored from an
/// autosave when `path` is `None`): applies it, loads its model if it
/// differs from the one loaded, marks stale results, and reports `what`
/// happened with the stale results and the repairs made while loading.
pub(crate) fn open(
    s: &mut AppState,
    loaded: Loaded,
    path: Option<PathBuf>,
    what: &str,
    out: &mut Vec<Command>,
) {
    let Loaded { session, warnings } = loaded;
    let source = session.model.source.clone();
    apply_session(s, session, path);
    super::dataset::session_inline(s, out);
    // Before marking: a model about to be replaced must not judge the
    // session's results (while the new one loads, the session's recorded
    // fingerprint stands in).
    if !s.session.model_override && source != s.model.load.source {
        s.model.load = LoadSpec {
            source,
            ..s.model.load.clone()
        };
        s.model.state = ModelState::Loading;
        out.push(Command::Worker(Request::Load(s.model.load.clone())));
    } else {
        request_tokenize(s, out);
        request_estimate(s, out);
    }
    let mut msg = what.to_string();
    let mut level = Level::Info;
    for note in [stale_summary(s), unavailable_summary(s)]
        .into_iter()
        .flatten()
    {
        msg.push_str(&format!(" · {note}"));
        level = Level::Warn;
    }
    if !warnings.is_empty() {
        let repairs: Vec<String> = warnings
            .iter()
            .map(|w| match w.field.as_str() {
                "" => w.message.clone(),
                f => format!("{f}: {}", w.message),
            })
            .collect();
        msg.push_str(&format!(" · repaired on load: {}", repairs.join("; ")));
        level = Level::Warn;
    }
    s.set_status(level, msg);
}

pub(crate) fn session_loaded(
    s: &mut AppState,
    path: PathBuf,
    result: Result<Box<Loaded>, String>,
    out: &mut Vec<Command>,
) {
    match result {
        Ok(loaded) => {
            if s.session.dirty {
                if let Some(a) = s.session.autosave.clone() {
                    out.push(Command::Save {
                        path: a,
                        session: Box::new(to_session(s)),
                        kind: SaveKind::Autosave,
                    });
                }
            }
            if let Some(r) = s.running.take() {
                out.push(Command::Cancel(r.job));
            }
            let n = loaded
                .session
                .sweeps
                .iter()
                .filter(|e| e.result.is_some())
                .count();
            let what = format!(
                "opened {} ({n} stored results, shown without recomputing)",
                path.display()
            );
            open(s, *loaded, Some(path), &what, out);
        }
        Err(e) => {
            s.set_status(Level::Error, "cannot open the session");
            s.show_message(&format!("cannot open {}", path.display()), &e);
        }
    }
}

pub(crate) fn saved(
    s: &mut AppState,
    path: PathBuf,
    kind: SaveKind,
    result: Result<(), String>,
    out: &mut Vec<Command>,
) {
    match (result, kind) {
        (Ok(()), SaveKind::Autosave) => {}
        (Ok(()), _) => {
            s.session.path = Some(path.clone());
            s.session.dirty = false;
            s.set_status(Level::Info, format!("saved {}", path.display()));
            out.push(Command::RemoveAutosave);
            if std::mem::take(&mut s.session.quit_after_save) {
                s.quit = true;
                out.push(Command::Quit);
            }
        }
        (Err(e), SaveKind::Autosave) => s.set_status(Level::Warn, format!("autosave failed: {e}")),
        (Err(e), _) => {
            s.session.quit_after_save = false;
            s.set_status(Level::Error, e);
        }
    }
}

pub(crate) fn exported(s: &mut AppState, path: PathBuf, result: Result<(), String>) {
    match result {
        Ok(()) => match s.stale_reason() {
            Some(why) => s.set_status(
                Level::Warn,
                format!("exported {} (a stale result: {why})", path.display()),
            ),
            None => s.set_status(Level::Info, format!("exported {}", path.display())),
        },
        Err(e) => s.set_status(Level::Error, format!("cannot export: {e}")),
    }
}
