//! Replies: worker messages and finished file operations. A reply to a job
//! the state no longer waits for (a superseded tokenisation, a cancelled
//! sweep, a closed drill-down) is dropped here.

use std::path::PathBuf;

use crate::session::{Session, StoredResult};

use super::command::Command;
use super::messages::{LoadSpec, Request, WorkerMsg};
use super::sessions::apply_session;
use super::settings::EstimateState;
use super::state::{AppState, Level, ModelState, Partial, Popup};
use super::update::{request_estimate, request_tokenize};

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
            s.set_status(Level::Info, msg);
            request_tokenize(s, out);
            request_estimate(s, out);
        }
        WorkerMsg::ModelFailed { source, error } => {
            s.model.state = ModelState::Failed(error.clone());
            s.set_status(Level::Error, format!("cannot load model {source}"));
            s.popup = Some(Popup::Message {
                title: format!("cannot load model {source}"),
                text: error,
            });
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
        } => {
            let Some(r) = s.running.as_mut().filter(|r| r.job == job) else {
                return;
            };
            (r.done, r.total, r.elapsed, r.eta) = (done, total, elapsed, eta);
            let idx = r.sweep;
            if let Some(p) = s.sweeps.get_mut(idx).and_then(|v| v.partial.as_mut()) {
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
            s.set_status(Level::Info, msg);
            super::update::show_selected_sweep(s);
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
    }
}

/// After a session was opened: load its model if it differs, re-tokenise.
pub(crate) fn after_open(s: &mut AppState, source: &str, out: &mut Vec<Command>) {
    if !s.session.model_override && source != s.model.load.source {
        s.model.load = LoadSpec {
            source: source.to_string(),
            ..s.model.load.clone()
        };
        s.model.state = ModelState::Loading;
        out.push(Command::Worker(Request::Load(s.model.load.clone())));
    } else {
        request_tokenize(s, out);
        request_estimate(s, out);
    }
}

pub(crate) fn session_loaded(
    s: &mut AppState,
    path: PathBuf,
    result: Result<Box<Session>, String>,
    out: &mut Vec<Command>,
) {
    match result {
        Ok(session) => {
            if s.session.dirty {
                if let Some(a) = s.session.autosave.clone() {
                    out.push(Command::Save {
                        path: a,
                        session: Box::new(super::sessions::to_session(s)),
                        autosave: true,
                    });
                }
            }
            if let Some(r) = s.running.take() {
                out.push(Command::Cancel(r.job));
            }
            let source = session.model.source.clone();
            let n = session.sweeps.iter().filter(|e| e.result.is_some()).count();
            apply_session(s, *session, Some(path.clone()));
            s.set_status(
                Level::Info,
                format!(
                    "opened {} ({n} stored results, shown without recomputing)",
                    path.display()
                ),
            );
            after_open(s, &source, out);
        }
        Err(e) => {
            s.set_status(Level::Error, "cannot open the session");
            s.popup = Some(Popup::Message {
                title: format!("cannot open {}", path.display()),
                text: e,
            });
        }
    }
}

pub(crate) fn saved(
    s: &mut AppState,
    path: PathBuf,
    autosave: bool,
    result: Result<(), String>,
    out: &mut Vec<Command>,
) {
    match (result, autosave) {
        (Ok(()), false) => {
            s.session.path = Some(path.clone());
            s.session.dirty = false;
            s.set_status(Level::Info, format!("saved {}", path.display()));
            out.push(Command::RemoveAutosave);
        }
        (Ok(()), true) => {}
        (Err(e), false) => s.set_status(Level::Error, e),
        (Err(e), true) => s.set_status(Level::Warn, format!("autosave failed: {e}")),
    }
}
