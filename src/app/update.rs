//! `update`: the only function that changes the state. Actions in, state
//! changed, commands out; no terminal, no model, no files, so every
//! behaviour is testable by feeding actions.
//!
//! Dispatch order for a key intent: an open popup takes it; in edit mode
//! only the edit intents apply; otherwise global intents, then the focused
//! pane's (in `panes.rs`). Worker and file replies are in `replies.rs`.

use std::path::PathBuf;

use crate::patching::METRICS;

use super::action::{Action, Intent};
use super::command::{Command, SaveKind};
use super::messages::Request;
use super::panes;
use super::prompts::line_editor;
use super::replies;
use super::saving::{autosave, default_path, save, save_as, save_to};
use super::sessions::to_session;
use super::state::{AppState, Focus, Level, Mode, ModelState, Popup, Running, SweepView};
use super::transitions::{input, request_estimate, show_selected_sweep, spec_problem};

/// Applies one action.
pub fn update(s: &mut AppState, a: Action) -> Vec<Command> {
    let mut out = Vec::new();
    match a {
        Action::Intent(i) => intent(s, i, &mut out),
        Action::EditKey(input) => panes::edit_key(s, input, &mut out),
        Action::Paste(text) => panes::paste(s, &text, &mut out),
        Action::Worker(m) => replies::worker(s, m, &mut out),
        Action::Resize(w, h) => s.size = (w, h),
        Action::AutosaveDue => autosave(s, &mut out),
        Action::AutosaveFound { path, loaded, age } => {
            s.show_popup(Popup::RestoreAutosave { path, loaded, age })
        }
        Action::SessionsListed(list) => {
            if let Some(Popup::Browser { entries, selected }) = &mut s.popup {
                *selected = 0;
                *entries = Some(list);
            }
        }
        Action::SessionLoaded { path, result } => {
            replies::session_loaded(s, path, result, &mut out)
        }
        Action::Saved { path, kind, result } => replies::saved(s, path, kind, result, &mut out),
        Action::SaveTargetExists { path } => {
            s.mode = Mode::Nav;
            s.popup = Some(Popup::ConfirmOverwrite { path });
        }
        Action::Exported { path, result } => replies::exported(s, path, result),
        Action::SweepInterrupted(i) => super::resume::found(s, *i),
        Action::DatasetOpened { name, result } => {
            replies::dataset_opened(s, name, result, &mut out)
        }
        Action::MouseFocus(f) => {
            if s.popup.is_none() && s.mode == Mode::Nav && (f != Focus::Drill || s.drill.is_some())
            {
                s.focus = f;
            }
        }
        Action::MouseScroll { down } => {
            let i = if down { Intent::Down } else { Intent::Up };
            intent(s, i, &mut out)
        }
    }
    if s.popup.is_none() {
        s.popup = s.queued_popups.pop_front();
    }
    super::spread_keys::refresh(s);
    out
}

fn intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    if s.popup.is_some() {
        return popup(s, i, out);
    }
    if s.mode == Mode::Edit {
        return panes::edit_intent(s, i, out);
    }
    match i {
        Intent::Quit => {
            if s.session.dirty {
                s.popup = Some(Popup::ConfirmQuit);
            } else {
                s.quit = true;
                out.push(Command::Quit);
            }
        }
        Intent::Help => s.popup = Some(Popup::Help { scroll: 0 }),
        Intent::RunSweep => run_sweep(s, out),
        Intent::RunCircuit | Intent::ToggleCircuit => {
            // One pane at a time in the heatmap's place.
            s.dataset.shown = false;
            super::circuit::global_intent(s, i, out)
        }
        Intent::Back => back(s, out),
        Intent::Save => save(s, out),
        Intent::SaveAs => save_as(s),
        Intent::Open => {
            s.popup = Some(Popup::Browser {
                entries: None,
                selected: 0,
            });
            out.push(Command::ListSessions);
        }
        Intent::Export => export(s, out),
        Intent::PairList => super::dataset::toggle(s, out),
        Intent::FocusNext | Intent::FocusPrev => cycle_focus(s, i == Intent::FocusNext),
        Intent::MetricNext | Intent::MetricPrev => {
            let d = if i == Intent::MetricNext { 1 } else { -1 };
            s.heatmap.metric =
                (s.heatmap.metric as i32 + d).rem_euclid(METRICS.len() as i32) as usize;
        }
        // In the circuit pane they step through the session's circuits.
        Intent::SweepNext | Intent::SweepPrev
            if !(s.circuit.shown && s.focus == Focus::Heatmap) =>
        {
            if !s.sweeps.is_empty() {
                let d = if i == Intent::SweepNext { 1 } else { -1 };
                let n = s.sweeps.len() as i32;
                s.selected_sweep = (s.selected_sweep as i32 + d).rem_euclid(n) as usize;
                show_selected_sweep(s);
                request_estimate(s, out);
            }
        }
        _ => panes::pane_intent(s, i, out),
    }
}

fn cycle_focus(s: &mut AppState, forward: bool) {
    let mut order = vec![Focus::Prompts, Focus::Settings, Focus::Heatmap];
    if s.drill.is_some() {
        order.push(Focus::Drill);
    }
    let i = order.iter().position(|f| *f == s.focus).unwrap_or(0) as i32;
    let d = if forward { 1 } else { -1 };
    s.focus = order[(i + d).rem_euclid(order.len() as i32) as usize];
}

fn back(s: &mut AppState, out: &mut Vec<Command>) {
    if s.dataset.shown && s.focus == Focus::Heatmap && s.drill.is_none() {
        return super::dataset::back(s, out);
    }
    if s.drill.is_none() && super::circuit::cancel(s, out) {
        return;
    }
    let spread = &mut s.heatmap.spread;
    if s.drill.is_some() {
        s.drill = None;
        s.focus = Focus::Heatmap;
    } else if spread.pair.is_some() || spread.compare.is_some() || spread.beside.is_some() {
        // Back from one pair alone, a difference or two sweeps side by
        // side to the sweep's means.
        (spread.pair, spread.compare, spread.beside) = (None, None, None);
        s.set_status(Level::Info, "showing the mean over pairs");
    } else if let Some(r) = &mut s.running {
        if !r.cancelling {
            r.cancelling = true;
            out.push(Command::Cancel(r.job));
            s.set_status(Level::Info, "cancelling the sweep after the current batch…");
        }
    } else {
        s.status = None;
    }
}

fn model_ready(s: &mut AppState) -> bool {
    match &s.model.state {
        ModelState::Ready(_) => true,
        ModelState::Loading => {
            s.set_status(
                Level::Warn,
                format!("the model {} is still loading", s.model.load.source),
            );
            false
        }
        ModelState::Failed(e) => {
            let e = e.clone();
            s.set_status(Level::Error, format!("no model: {e}"));
            false
        }
    }
}

fn run_sweep(s: &mut AppState, out: &mut Vec<Command>) {
    if !super::resume::ask_before_running(s) {
        start_sweep(s, false, out);
    }
}

/// Starts the settings' sweep; `resume`: from the session's checkpoint.
fn start_sweep(s: &mut AppState, resume: bool, out: &mut Vec<Command>) {
    if !model_ready(s) {
        return;
    }
    if let Some(p) = s.prompts.problems().first() {
        let p = p.clone();
        s.set_status(Level::Error, format!("cannot run: {p}"));
        return;
    }
    if let Err(e) = spec_problem(s) {
        s.set_status(Level::Error, format!("cannot run: {e}"));
        return;
    }
    if let Some(old) = s.running.take() {
        out.push(Command::Cancel(old.job));
        if let Some(v) = s.sweeps.get_mut(old.sweep) {
            v.partial = None;
        }
    }
    let spec = s.settings.spec.clone();
    // A pair opened alone is a sweep of its own, beside the dataset's.
    let subset = s.dataset.alone.map(|i| vec![i]);
    let idx = match s
        .sweeps
        .iter()
        .position(|v| v.spec == spec && v.pairs == subset)
    {
        Some(i) => i,
        None => {
            s.sweeps.push(SweepView {
                pairs: subset.clone(),
                ..SweepView::new(spec.clone())
            });
            s.sweeps.len() - 1
        }
    };
    s.selected_sweep = idx;
    let job = s.jobs.new_id();
    let input = input(s);
    s.running = Some(Running {
        inputs: super::sessions::inputs_of(s, &spec, subset),
        job,
        sweep: idx,
        done: 0,
        total: 0,
        elapsed: Default::default(),
        eta: None,
        cancelling: false,
    });
    s.drill = None;
    s.focus = Focus::Heatmap;
    s.session.dirty = true;
    s.set_status(Level::Info, format!("running {} …", spec.target));
    let checkpoint = super::resume::checkpoint_for(s, resume);
    out.push(Command::Worker(Request::Sweep {
        job,
        input,
        spec,
        checkpoint,
    }));
}

/// Exports the shown sweep's stored heatmap, in the shown metric, as SVG
/// (`session::heatmap_svg`, the figure `patchbench export` draws).
fn export(s: &mut AppState, out: &mut Vec<Command>) {
    if s.circuit.shown && s.focus == Focus::Heatmap {
        return super::circuit::export(s, out);
    }
    let Some(v) = s.sweep() else {
        return s.set_status(Level::Warn, "nothing to export yet: press r to run a sweep");
    };
    if s.running
        .as_ref()
        .is_some_and(|r| r.sweep == s.selected_sweep)
    {
        return s.set_status(
            Level::Warn,
            "the sweep is still running; export it when it is done",
        );
    }
    let Some(stored) = &v.stored else {
        return s.set_status(
            Level::Warn,
            "this sweep has no result to export yet: press r to run it",
        );
    };
    let svg = crate::session::heatmap_svg(
        &s.model.load.source,
        &v.spec,
        stored,
        s.heatmap.metric_name(),
    );
    match (svg, super::sessions::export_path(s)) {
        (Ok(svg), Some(path)) => out.push(Command::Export { path, svg }),
        (Err(e), _) => s.set_status(Level::Error, format!("cannot export: {e}")),
        (_, None) => s.set_status(
            Level::Error,
            "cannot export: no user data directory; save the session first and the figure goes beside it",
        ),
    }
}

/// Expands a leading `~/` to the home directory.
fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn popup(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    let Some(p) = s.popup.take() else { return };
    let keep = match p {
        Popup::Help { scroll } => match i {
            Intent::Up => Some(Popup::Help {
                scroll: scroll.saturating_sub(1),
            }),
            Intent::Down => Some(Popup::Help { scroll: scroll + 1 }),
            Intent::Back | Intent::Help | Intent::Quit | Intent::Select => None,
            _ => Some(Popup::Help { scroll }),
        },
        Popup::Message { .. } => None,
        Popup::ConfirmQuit => match i {
            Intent::Yes => {
                autosave(s, out);
                s.quit = true;
                out.push(Command::Quit);
                None
            }
            Intent::Save => {
                // Quit once the save has succeeded: a failed save keeps
                // the workbench open with the error.
                let path = s.session.path.clone().unwrap_or_else(|| default_path(s));
                s.session.quit_after_save = true;
                save_to(s, path, out);
                None
            }
            Intent::No | Intent::Back => None,
            _ => Some(Popup::ConfirmQuit),
        },
        Popup::SaveAs { input } => match i {
            Intent::Select | Intent::Yes => {
                let text = super::prompts::editor_text(&input);
                s.mode = Mode::Nav;
                if text.trim().is_empty() {
                    s.set_status(Level::Error, "give a file name to save to");
                    Some(Popup::SaveAs { input })
                } else {
                    save_to(s, expand(text.trim()), out);
                    None
                }
            }
            Intent::Back => {
                s.mode = Mode::Nav;
                s.session.quit_after_save = false;
                None
            }
            _ => Some(Popup::SaveAs { input }),
        },
        Popup::ConfirmOverwrite { path } => match i {
            Intent::Yes => {
                out.push(Command::Save {
                    path,
                    session: Box::new(to_session(s)),
                    kind: SaveKind::SaveAs { overwrite: true },
                });
                None
            }
            // Choose another name.
            Intent::No => {
                s.mode = Mode::Edit;
                Some(Popup::SaveAs {
                    input: Box::new(line_editor(&path.display().to_string())),
                })
            }
            Intent::Back => {
                s.session.quit_after_save = false;
                None
            }
            _ => Some(Popup::ConfirmOverwrite { path }),
        },
        Popup::Browser { entries, selected } => {
            let n = entries.as_ref().map_or(0, Vec::len);
            match i {
                Intent::Up => Some(Popup::Browser {
                    entries,
                    selected: selected.saturating_sub(1),
                }),
                Intent::Down => Some(Popup::Browser {
                    entries,
                    selected: (selected + 1).min(n.saturating_sub(1)),
                }),
                Intent::Select | Intent::Edit | Intent::DrillDown => {
                    if let Some(v) = &entries {
                        if let Some(e) = v.get(selected) {
                            out.push(Command::LoadSession(e.path.clone()));
                        }
                    }
                    None
                }
                Intent::Back | Intent::Open | Intent::Quit => None,
                _ => Some(Popup::Browser { entries, selected }),
            }
        }
        Popup::ResumeSweep {
            interrupted,
            requested,
        } => super::resume::intent(s, i, interrupted, requested, out, start_sweep),
        Popup::RestoreAutosave { path, loaded, age } => match i {
            Intent::Yes | Intent::Select => {
                let what = format!("restored the autosave from {age} ({})", path.display());
                replies::open(s, *loaded, None, &what, out);
                s.session.dirty = true;
                // The recovered copy is replaced by this sitting's autosave.
                out.push(Command::RemoveAutosave);
                autosave(s, out);
                None
            }
            Intent::No => {
                out.push(Command::RemoveAutosave);
                None
            }
            Intent::Back => None,
            _ => Some(Popup::RestoreAutosave { path, loaded, age }),
        },
    };
    if let Some(p) = keep {
        s.popup = Some(p);
    }
}
