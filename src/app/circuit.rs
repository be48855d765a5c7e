//! The circuit pane's state and transitions: circuit searches started,
//! followed and cancelled like sweeps, their results kept per spec (as the
//! session stores them), the edge cursor, and the edge drill-down.
//!
//! A search runs on the prompt pairs with the sweep settings' direction
//! and corruption, ranked by the shown metric, with the pane's method
//! (any of `Method::ALL`, so methods added to `circuits/` appear here).
//! The pane takes the heatmap's place while shown (`g` toggles): focus,
//! layout and the drill-down area are the heatmap's, so the rest of the
//! workbench treats it as the main view. The edge drill-down is an
//! ordinary drill-down (`DrillTarget::Edge`) whose data the worker
//! computes from the edge's names.

use std::time::Duration;

use crate::circuits::Method;
use crate::patching::metrics::lookup;
use crate::patching::PromptPair;
use crate::session::circuit::{circuit_digest, CircuitSpec, StoredCircuit};

use super::action::Intent;
use super::command::Command;
use super::drill::DrillState;
use super::messages::{DrillTarget, Request, WorkerMsg};
use super::state::{AppState, Focus, Level, ModelState};
use super::transitions::input;

pub use super::circuit_stale::mark_stale;
pub use super::circuit_state::{
    far_from_exact, head_of, CircuitRunning, CircuitState, CircuitTab, CircuitView,
};

pub(crate) fn global_intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    match i {
        Intent::RunCircuit => run(s, out),
        Intent::ToggleCircuit => {
            s.circuit.shown = !s.circuit.shown;
            s.drill = None;
            s.focus = Focus::Heatmap;
            if s.circuit.shown && s.circuit.views.is_empty() {
                s.set_status(
                    Level::Info,
                    "no circuit yet: press c to find one (t changes the method)",
                );
            }
        }
        _ => {}
    }
}

/// Keys of the focused circuit pane.
pub(crate) fn pane_intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    let c = &mut s.circuit;
    let n = c.stored().map_or(0, |r| r.result.edges.len());
    match i {
        Intent::Up => c.cursor = c.cursor.saturating_sub(1),
        Intent::Down => c.cursor = (c.cursor + 1).min(n.saturating_sub(1)),
        Intent::PageNext | Intent::PagePrev | Intent::Right | Intent::Left => {
            let d = if matches!(i, Intent::PageNext | Intent::Right) {
                1
            } else {
                -1
            };
            let k = CircuitTab::ALL
                .iter()
                .position(|t| *t == c.tab)
                .unwrap_or(0) as i32;
            c.tab = CircuitTab::ALL[(k + d).rem_euclid(CircuitTab::ALL.len() as i32) as usize];
        }
        Intent::CircuitMethod => {
            let k = Method::ALL.iter().position(|m| *m == c.method).unwrap_or(0);
            c.method = Method::ALL[(k + 1) % Method::ALL.len()];
            let m = c.method.name();
            s.set_status(
                Level::Info,
                format!("circuit method: {m} (c finds the circuit)"),
            );
        }
        Intent::CircuitPositions => {
            c.positions = !c.positions;
            let what = match c.positions {
                true => "position-aware (each edge at each token position)",
                false => "position-free",
            };
            s.set_status(
                Level::Info,
                format!("circuit edges: {what} (c finds the circuit)"),
            );
        }
        Intent::SweepNext | Intent::SweepPrev if !c.views.is_empty() => {
            let d = if i == Intent::SweepNext { 1 } else { -1 };
            let k = c.views.len() as i32;
            c.selected = (c.selected as i32 + d).rem_euclid(k) as usize;
            c.cursor = 0;
        }
        Intent::DrillDown | Intent::Edit => drill(s, out),
        _ => {}
    }
}

/// Esc: cancels the running search if it is the one in view (or no sweep
/// runs). Returns whether it did.
pub(crate) fn cancel(s: &mut AppState, out: &mut Vec<Command>) -> bool {
    let sweep_running = s.running.is_some();
    let shown = s.circuit.shown;
    let Some(r) = s.circuit.running.as_mut() else {
        return false;
    };
    if !shown && sweep_running {
        return false;
    }
    if !r.cancelling {
        r.cancelling = true;
        out.push(Command::CancelCircuit(r.job));
        s.set_status(Level::Info, "cancelling the circuit search…");
    }
    true
}

fn model_ready(s: &mut AppState) -> bool {
    let msg = match &s.model.state {
        ModelState::Ready(_) => return true,
        ModelState::Loading => format!("the model {} is still loading", s.model.load.source),
        ModelState::Failed(e) => format!("no model: {e}"),
    };
    s.set_status(Level::Warn, msg);
    false
}

/// The spec of a search started now.
pub fn current_spec(s: &AppState) -> CircuitSpec {
    CircuitSpec {
        metric: s.heatmap.metric_name().to_string(),
        direction: s.settings.spec.direction,
        corruption: s.settings.spec.corruption.clone(),
        positions: s.circuit.positions,
        ..CircuitSpec::new(s.circuit.method)
    }
}

fn run(s: &mut AppState, out: &mut Vec<Command>) {
    if !model_ready(s) {
        return;
    }
    if let Some(p) = s.prompts.problems().first() {
        let p = p.clone();
        return s.set_status(Level::Error, format!("cannot find a circuit: {p}"));
    }
    if let Some(old) = s.circuit.running.take() {
        out.push(Command::CancelCircuit(old.job));
    }
    let spec = current_spec(s);
    let c = &mut s.circuit;
    let idx = match c.views.iter().position(|v| v.spec == spec) {
        Some(i) => i,
        None => {
            c.views.push(CircuitView {
                spec: spec.clone(),
                stored: None,
                stale: None,
            });
            c.views.len() - 1
        }
    };
    c.selected = idx;
    c.cursor = 0;
    c.shown = true;
    let job = s.jobs.new_id();
    let input = input(s);
    let pairs: Vec<&PromptPair> = input.pairs.iter().collect();
    s.circuit.running = Some(CircuitRunning {
        job,
        view: idx,
        stage: None,
        done: 0,
        total: 0,
        elapsed: Duration::ZERO,
        cancelling: false,
        inputs: circuit_digest(&spec, &pairs, input.prepend_bos),
    });
    s.drill = None;
    s.focus = Focus::Heatmap;
    s.session.dirty = true;
    s.set_status(
        Level::Info,
        format!(
            "finding the circuit ({}, ranked by {}) …",
            spec.method.name(),
            spec.metric
        ),
    );
    out.push(Command::Worker(Request::Circuit { job, input, spec }));
}

/// Opens the drill-down of the edge under the cursor: the estimate beside
/// the exact change (computed now if the search did not check the edge),
/// and the attention patterns of the heads at its ends.
fn drill(s: &mut AppState, out: &mut Vec<Command>) {
    let Some(view) = s.circuit.view() else {
        return s.set_status(Level::Warn, "no circuit yet: press c to find one");
    };
    let Some(e) = s.circuit.edge().cloned() else {
        return s.set_status(
            Level::Warn,
            "no edge to drill into: press c to find the circuit",
        );
    };
    let spec = view.spec.clone();
    let job = s.jobs.new_id();
    s.drill = Some(DrillState {
        target: DrillTarget::Edge {
            rank: s.circuit.cursor,
        },
        job,
        result: None,
        effect_row: None,
        scroll: 0,
    });
    s.focus = Focus::Drill;
    out.push(Command::Worker(Request::EdgeDrill {
        job,
        input: input(s),
        spec,
        sender: e.sender.clone(),
        receiver: e.receiver.clone(),
        at: e.dst_pos,
        exact: e.exact.is_none(),
    }));
}

/// Worker replies about circuit searches.
pub(crate) fn reply(s: &mut AppState, m: WorkerMsg) {
    match m {
        WorkerMsg::CircuitProgress {
            job,
            stage,
            done,
            total,
            elapsed,
        } => {
            if let Some(r) = s.circuit.running.as_mut().filter(|r| r.job == job) {
                (r.stage, r.done, r.total, r.elapsed) = (Some(stage), done, total, elapsed);
            }
        }
        WorkerMsg::CircuitDone { job, result } => {
            let Some(r) = s.circuit.running.take_if(|r| r.job == job) else {
                return;
            };
            let mut stored = *result;
            stored.inputs = r.inputs;
            let res = &stored.result;
            let reached =
                |k: Option<usize>| k.map_or("not reached".into(), |k| format!("{k} edges"));
            let secs = (res.timing.runs_ms
                + res.timing.scores_ms
                + res.timing.exact_ms
                + res.timing.faithfulness_ms) as f64
                / 1e3;
            let msg = format!(
                "circuit found: {} edges scored by {}, 80% recovered at {} ({secs:.2} s)",
                res.n_edges,
                res.method.name(),
                reached(res.edges_for_80)
            );
            if let Some(v) = s.circuit.views.get_mut(r.view) {
                v.stored = Some(stored);
            }
            s.circuit.selected = r.view;
            s.circuit.cursor = 0;
            s.session.dirty = true;
            mark_stale(s);
            s.set_status(Level::Info, msg);
        }
        WorkerMsg::CircuitFailed {
            job,
            error,
            cancelled,
        } => {
            if s.circuit.running.take_if(|r| r.job == job).is_none() {
                return;
            }
            if cancelled {
                s.set_status(Level::Warn, "circuit search cancelled");
            } else {
                s.set_status(Level::Error, format!("circuit search failed: {error}"));
            }
        }
        _ => {}
    }
}

/// The shown circuit's ranking metric's index in the registry.
pub fn metric_of(c: &StoredCircuit) -> Option<crate::patching::metrics::MetricId> {
    lookup(&c.result.metric).map(|(m, _)| m)
}

/// Edges drawn by the pane's SVG export.
pub const EXPORT_EDGES: usize = 20;

/// `e` in the circuit pane: the shown circuit's top edges as the layered
/// SVG drawing (`circuit --format svg`), beside the session file (or in
/// the data directory while the session is unsaved).
pub(crate) fn export(s: &mut AppState, out: &mut Vec<Command>) {
    let Some(v) = s.circuit.view() else {
        return s.set_status(Level::Warn, "no circuit to export yet: press c to find one");
    };
    let Some(c) = &v.stored else {
        return s.set_status(
            Level::Warn,
            "this circuit has no result yet: press c to find it",
        );
    };
    let r = &c.result;
    let n = r.edges.len().min(EXPORT_EDGES);
    let title = format!(
        "{} on {}: top {n} of {} edges by |{}|",
        r.method.name(),
        s.model.load.source,
        r.n_edges,
        r.metric
    );
    let sub = format!(
        "{} {} · blue raises the metric when patched, red lowers it",
        v.spec.direction,
        v.spec.corruption.name()
    );
    let Some(svg) = crate::circuits::svg::circuit_svg(&r.edges[..n], &r.metric, &title, &sub)
    else {
        return s.set_status(
            Level::Error,
            format!("cannot export: unknown metric {}", r.metric),
        );
    };
    let (dir, stem) = match &s.session.path {
        Some(p) => (
            p.parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
            p.file_stem().map(|x| x.to_string_lossy().into_owned()),
        ),
        None => (
            s.session.data_dir.clone().unwrap_or_default(),
            Some(crate::util::text::file_safe(&s.model.load.source)),
        ),
    };
    if s.session.path.is_none() && s.session.data_dir.is_none() {
        return s.set_status(
            Level::Error,
            "cannot export: no user data directory; save the session first and the figure goes beside it",
        );
    }
    let stem = stem.unwrap_or_else(|| "session".into());
    let path = dir.join(format!(
        "{stem}-circuit{}-{}.svg",
        s.circuit.selected + 1,
        v.spec.method.name()
    ));
    out.push(Command::Export { path, svg });
}
