//! The dataset pane's transitions: every pair of the dataset (or of the
//! prompt editor, when the workbench has no dataset) with its clean and
//! corrupted baselines, the failing pairs (whose clean run does not prefer
//! the answer) marked and, on request, alone; Enter opens one pair alone
//! in the prompt editor, `a` brings the whole dataset back.
//!
//! The baselines are measured on the model thread (`Request::Baselines`,
//! with progress; Esc cancels) when the pane opens and they are missing or
//! out of date; until then a sweep's per-pair baselines stand in. The pane
//! takes the heatmap's place and focus while shown, like the circuit pane.

use crate::data::Dataset;
use crate::patching::metrics::LOGIT_DIFF;
use crate::patching::PromptPair;

use super::action::Intent;
use super::command::Command;
use super::dataset_state::{input_key, DatasetState, Measured, Measuring};
use super::messages::{PairsInput, Request, WorkerMsg};
use super::prompts::PromptsState;
use super::sessions::mark_stale;
use super::state::{AppState, Focus, Level, ModelState};
use super::transitions::prompts_changed;

/// One row of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Index into the pairs.
    pub index: usize,
    /// The clean prompt.
    pub text: String,
    /// Logit difference of the clean and corrupted runs, once measured.
    pub clean: Option<f32>,
    pub corrupted: Option<f32>,
    /// The clean run does not prefer the answer (logit difference ≤ 0).
    pub failing: bool,
    /// Why the pair cannot run, if it cannot.
    pub problem: Option<String>,
}

/// Every pair of the dataset, the whole set even while the editor holds
/// one alone.
pub fn whole(s: &AppState) -> PairsInput {
    let pairs = s.dataset.whole_pairs(&s.prompts.to_pairs());
    PairsInput {
        labels: s.dataset.labels_for(&pairs),
        pairs,
        prepend_bos: s.prompts.bos,
    }
}

/// Every pair, or only the failing ones: baselines measured for exactly
/// these pairs, else those of the shown sweep when it ran on all of them.
pub fn rows(s: &AppState, failing_only: bool) -> Vec<PairRow> {
    // Drawn every frame: the pairs only, no labels.
    let pairs = s.dataset.whole_pairs(&s.prompts.to_pairs());
    let measured = s
        .dataset
        .measured_for(input_key(&pairs, s.prompts.bos, model(s)));
    let swept = s
        .sweep()
        .filter(|v| v.pairs.is_none())
        .and_then(|v| v.stored.as_ref())
        .map(|st| st.result.pair_baselines.as_slice())
        .filter(|b| b.len() == pairs.len())
        .unwrap_or(&[]);
    let mut list = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (b, problem) = match measured.and_then(|m| m.values.get(i)) {
                Some(Some(Ok(b))) => (Some(*b), None),
                Some(Some(Err(e))) => (None, Some(e.clone())),
                _ => (swept.get(i).copied(), None),
            };
            let clean = b.map(|b| b.clean[LOGIT_DIFF]);
            PairRow {
                index: i,
                text: p.clean.clone(),
                clean,
                corrupted: b.map(|b| b.corrupted[LOGIT_DIFF]),
                failing: clean.is_some_and(|c| c.is_nan() || c <= 0.0),
                problem,
            }
        })
        .filter(|r| !failing_only || r.failing)
        .collect::<Vec<_>>();
    if s.dataset.by_clean {
        // Lowest first; pairs without a number last, in order.
        let k = |r: &PairRow| r.clean.filter(|c| !c.is_nan()).unwrap_or(f32::INFINITY);
        list.sort_by(|a, b| k(a).total_cmp(&k(b)).then(a.index.cmp(&b.index)));
    }
    list
}

/// The loaded model's fingerprint ("" while none is loaded).
fn model(s: &AppState) -> &str {
    s.model.info().map_or("", |i| i.fingerprint.as_str())
}

/// Shows the pane (on the pair in the editor) or hides it again.
pub fn toggle(s: &mut AppState, out: &mut Vec<Command>) {
    if s.dataset.shown {
        s.dataset.shown = false;
        return;
    }
    let d = &mut s.dataset;
    d.shown = true;
    d.failing_only = false;
    d.selected = d.alone.unwrap_or(s.prompts.selected);
    s.circuit.shown = false;
    s.focus = Focus::Heatmap;
    measure(s, out);
}

/// Asks the model thread for the baselines of every pair, unless they are
/// current or being measured.
pub fn measure(s: &mut AppState, out: &mut Vec<Command>) {
    if !matches!(s.model.state, ModelState::Ready(_)) {
        return;
    }
    let input = whole(s);
    let key = input_key(&input.pairs, input.prepend_bos, model(s));
    if s.dataset.measured_for(key).is_some() && s.dataset.measuring.is_none() {
        return;
    }
    if let Some(m) = s.dataset.measuring.take() {
        out.push(Command::CancelBaselines(m.job));
    }
    let job = s.jobs.new_id();
    let n = input.pairs.len();
    s.dataset.measured = Some(Measured {
        key,
        values: vec![None; n],
    });
    s.dataset.measuring = Some(Measuring {
        job,
        done: 0,
        total: n,
    });
    out.push(Command::Worker(Request::Baselines { job, input }));
}

/// A key in the shown pane.
pub fn pane_intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    if let Intent::Up | Intent::Down = i {
        // Moving needs only the count (every pair but when filtered).
        let n = match (s.dataset.failing_only, s.dataset.alone) {
            (true, _) => rows(s, true).len(),
            (false, Some(_)) => s.dataset.pairs.len(),
            (false, None) => s.prompts.pairs.len(),
        };
        let d = &mut s.dataset;
        d.selected = match i {
            Intent::Up => d.selected.saturating_sub(1),
            _ => (d.selected + 1).min(n.saturating_sub(1)),
        };
        return;
    }
    let list = rows(s, s.dataset.failing_only);
    let d = &mut s.dataset;
    match i {
        Intent::FilterFailing | Intent::SortPairs => {
            // Keep the same pair selected when it is still listed.
            let pair = list.get(d.selected).map(|r| r.index);
            if i == Intent::FilterFailing {
                d.failing_only = !d.failing_only;
            } else {
                d.by_clean = !d.by_clean;
            }
            let next = rows(s, s.dataset.failing_only);
            s.dataset.selected = pair
                .and_then(|p| next.iter().position(|r| r.index == p))
                .unwrap_or(0);
        }
        Intent::Select | Intent::Edit | Intent::DrillDown => {
            if let Some(r) = list.get(d.selected) {
                open_alone(s, r.index, out);
            }
        }
        Intent::AllPairs => all_pairs(s, out),
        _ => {}
    }
}

/// Esc in the pane: cancels the measuring, else closes the pane.
pub fn back(s: &mut AppState, out: &mut Vec<Command>) {
    if let Some(m) = s.dataset.measuring.take() {
        out.push(Command::CancelBaselines(m.job));
        s.set_status(Level::Info, "baselines cancelled; D twice measures again");
    } else {
        s.dataset.shown = false;
    }
}

/// Puts pair `i` of the whole set alone in the prompt editor, to edit,
/// sweep and drill into by itself; the dataset stays (`all_pairs`). The
/// heatmap shows the pair's own values of the shown sweep meanwhile.
pub fn open_alone(s: &mut AppState, i: usize, out: &mut Vec<Command>) {
    let input = whole(s);
    let Some(pair) = input.pairs.get(i).cloned() else {
        return;
    };
    let d = &mut s.dataset;
    // The whole set as edited (every pair in the editor, or the pair
    // alone there until now) is the dataset from here on.
    if d.labels.len() != input.pairs.len() {
        d.labels.clear();
    }
    d.pairs = input.pairs;
    d.alone = Some(i);
    d.shown = false;
    s.prompts = PromptsState::new(&[pair], s.prompts.bos);
    let n = s
        .sweep()
        .filter(|v| v.pairs.is_none())
        .and_then(|v| v.stored.as_ref())
        .map_or(0, |st| st.result.per_pair.len());
    if i < n && n == s.dataset.pairs.len() {
        s.heatmap.spread.pair = Some(i);
        (s.heatmap.spread.compare, s.heatmap.spread.beside) = (None, None);
    }
    s.focus = Focus::Prompts;
    prompts_changed(s, out);
    s.set_status(
        Level::Info,
        format!(
            "pair {} of {} alone in the editor: r sweeps it by itself; D then a brings back all pairs",
            i + 1,
            s.dataset.pairs.len()
        ),
    );
}

/// The editor holds every pair of the dataset again.
pub fn all_pairs(s: &mut AppState, out: &mut Vec<Command>) {
    let Some(i) = s.dataset.alone.take() else {
        return s.set_status(Level::Info, "the editor already holds every pair");
    };
    // Edits made to the pair alone go back into the set.
    s.dataset.alone = Some(i);
    let pairs: Vec<PromptPair> = s.dataset.whole_pairs(&s.prompts.to_pairs());
    s.dataset.alone = None;
    s.prompts = PromptsState::new(&pairs, s.prompts.bos);
    s.prompts.selected = i.min(pairs.len().saturating_sub(1));
    s.dataset.pairs = pairs;
    s.heatmap.spread.pair = None;
    prompts_changed(s, out);
    s.set_status(
        Level::Info,
        format!(
            "all {} pairs in the editor: r sweeps them all",
            s.prompts.pairs.len()
        ),
    );
}

/// A dataset was opened (`--dataset`, or a session's): its pairs fill the
/// editor and sweeps run over them (by label when it has labels).
pub fn opened(s: &mut AppState, ds: &Dataset, name: String, out: &mut Vec<Command>) {
    s.dataset = DatasetState::of(ds, name);
    s.prompts = PromptsState::new(&s.dataset.pairs, s.prompts.bos);
    prompts_changed(s, out);
}

/// A dataset file was read (`Action::DatasetOpened`): the session
/// records it (by path, or inline when small), unless it is the one the
/// session already names (same digest), and its pairs fill the editor.
pub fn read(s: &mut AppState, ds: &Dataset, name: String, out: &mut Vec<Command>) {
    let dirty = s.session.dirty;
    let same = s
        .session
        .dataset
        .as_ref()
        .is_some_and(|r| r.digest == ds.digest);
    if !same {
        let dir = s.session.path.as_deref().and_then(std::path::Path::parent);
        s.session.dataset = Some(crate::session::dataset::DatasetRef::of(ds, dir));
    }
    opened(s, ds, name, out);
    s.session.dirty = dirty || !same;
    mark_stale(s);
}

/// After a session is applied: its inline dataset, read at once (a
/// dataset stored by path is read by the event loop, which reports it as
/// `Action::DatasetOpened`).
pub fn session_inline(s: &mut AppState, out: &mut Vec<Command>) {
    let Some(r) = s.session.dataset.as_ref().filter(|r| r.path.is_none()) else {
        return;
    };
    match crate::session::dataset::resolve(r, None) {
        Ok(res) => {
            let dirty = s.session.dirty;
            opened(s, &res.dataset, "the session's pairs".into(), out);
            s.session.dirty = dirty;
        }
        Err(e) => s.set_status(Level::Error, e.to_string()),
    }
}

/// The model thread's baselines replies.
pub fn reply(s: &mut AppState, m: WorkerMsg) {
    match m {
        WorkerMsg::BaselinesProgress {
            job,
            done,
            total,
            values,
        } => {
            let Some(run) = s.dataset.measuring.as_mut().filter(|r| r.job == job) else {
                return;
            };
            (run.done, run.total) = (done, total);
            if let Some(m) = &mut s.dataset.measured {
                for (i, v) in values {
                    if let Some(slot) = m.values.get_mut(i) {
                        *slot = Some(v);
                    }
                }
            }
        }
        WorkerMsg::BaselinesDone {
            job,
            cancelled,
            error,
        } => {
            if s.dataset.measuring.take_if(|r| r.job == job).is_none() {
                return;
            }
            if let Some(e) = error {
                s.dataset.measured = None;
                s.set_status(Level::Error, format!("cannot measure the baselines: {e}"));
            } else if cancelled {
                s.dataset.measured = None;
            } else {
                let failing = rows(s, true).len();
                s.set_status(
                    Level::Info,
                    format!("baselines measured: {failing} pairs whose clean run does not prefer the answer"),
                );
            }
        }
        _ => {}
    }
}
