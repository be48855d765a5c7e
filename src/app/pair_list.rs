//! The pair list: every prompt pair of the session (a dataset, when the
//! workbench was started with one) with its clean and corrupted logit
//! difference from the shown sweep, the failing pairs (whose clean run does
//! not prefer the answer) marked and, on request, alone; Enter opens one
//! pair as a single-pair investigation (the heatmap shows that pair's own
//! values, the prompts pane and drill-downs follow it; Esc returns to the
//! mean over pairs).

use crate::patching::metrics::LOGIT_DIFF;

use super::action::Intent;
use super::state::{AppState, Focus, Level, Popup};

/// One row of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Index into the pairs.
    pub index: usize,
    /// The clean prompt (or what is known of the pair).
    pub text: String,
    /// Logit difference of the clean and corrupted runs, once a sweep ran.
    pub clean: Option<f32>,
    pub corrupted: Option<f32>,
    /// The clean run does not prefer the answer (logit difference ≤ 0).
    pub failing: bool,
}

/// Every pair, or only the failing ones.
pub fn rows(s: &AppState, failing_only: bool) -> Vec<PairRow> {
    let pairs = s.prompts.to_pairs();
    let base = s
        .sweep()
        .and_then(|v| v.stored.as_ref())
        .map(|st| st.result.pair_baselines.as_slice())
        .unwrap_or(&[]);
    let n = pairs.len().max(base.len());
    (0..n)
        .map(|i| {
            let b = base.get(i);
            let clean = b.map(|b| b.clean[LOGIT_DIFF]);
            PairRow {
                index: i,
                text: pairs.get(i).map_or_else(
                    || format!("pair {} of the sweep", i + 1),
                    |p| p.clean.clone(),
                ),
                clean,
                corrupted: b.map(|b| b.corrupted[LOGIT_DIFF]),
                failing: clean.is_some_and(|c| c.is_nan() || c <= 0.0),
            }
        })
        .filter(|r| !failing_only || r.failing)
        .collect()
}

/// Opens the list on the shown pair.
pub fn open(s: &mut AppState) {
    let selected = s.heatmap.spread.pair.unwrap_or(s.prompts.selected);
    s.popup = Some(Popup::PairList {
        selected,
        failing_only: false,
    });
}

/// A key in the open list; returns the popup to keep open.
pub fn intent(s: &mut AppState, i: Intent, selected: usize, failing_only: bool) -> Option<Popup> {
    let list = rows(s, failing_only);
    let n = list.len();
    let keep = |selected, failing_only| {
        Some(Popup::PairList {
            selected,
            failing_only,
        })
    };
    match i {
        Intent::Up => keep(selected.saturating_sub(1), failing_only),
        Intent::Down => keep((selected + 1).min(n.saturating_sub(1)), failing_only),
        Intent::FilterFailing => {
            // Keep the same pair selected when it is still listed.
            let pair = list.get(selected).map(|r| r.index);
            let next = rows(s, !failing_only);
            let at = pair
                .and_then(|p| next.iter().position(|r| r.index == p))
                .unwrap_or(0);
            keep(at, !failing_only)
        }
        Intent::Select | Intent::Edit | Intent::DrillDown => {
            if let Some(r) = list.get(selected) {
                open_pair(s, r.index);
            }
            None
        }
        Intent::Back | Intent::Quit | Intent::PairList => None,
        _ => keep(selected, failing_only),
    }
}

/// Shows pair `i` alone in the heatmap (when the shown result has
/// per-pair values) and selects it in the prompts pane.
pub fn open_pair(s: &mut AppState, i: usize) {
    if i < s.prompts.pairs.len() {
        s.prompts.selected = i;
    }
    let n = s
        .sweep()
        .and_then(|v| v.stored.as_ref())
        .map_or(0, |st| st.result.per_pair.len());
    if i >= n {
        s.set_status(
            Level::Warn,
            format!(
                "pair {} selected; the shown sweep has no values for it (press r to run)",
                i + 1
            ),
        );
        return;
    }
    s.heatmap.spread.pair = Some(i);
    s.heatmap.spread.compare = None;
    s.focus = Focus::Heatmap;
    s.set_status(
        Level::Info,
        format!(
            "pair {} alone: its own values; Esc returns to the mean over {n} pairs",
            i + 1
        ),
    );
}
