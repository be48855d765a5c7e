//! The spread view's keys and caches on the state: the cursor on the
//! strongest effect and stepping down the ranking, shading on and off, the
//! sweep compared against, and [`refresh`], which renews the derived result
//! and the shading when what they depend on changed (`spread` computes).

use crate::patching::metrics::effect_sign;
use crate::patching::{Direction, METRICS};

use super::grid::GridRef;
use super::spread::{difference, pair_alone, uncertain_cells, Derived, Key};
use super::state::{AppState, Level};

/// Cells with a value, strongest effect first: by `|sign · (x − centre)|`,
/// the distance from "no effect" the colours show; ties in cell order.
pub fn ranked(g: &GridRef<'_>, metric: &str) -> Vec<usize> {
    let (centre, _) = g.scale(metric);
    let sign = effect_sign(metric);
    let mut cells: Vec<(usize, f32)> = (0..g.n_cells())
        .filter_map(|c| g.value(metric, c).map(|x| (c, (sign * (x - centre)).abs())))
        .collect();
    cells.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cells.into_iter().map(|(c, _)| c).collect()
}

/// The multi-index of row-major `cell` in `shape`.
pub fn unindex(mut cell: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, n) in shape.iter().enumerate().rev() {
        let n = (*n).max(1);
        idx[i] = cell % n;
        cell /= n;
    }
    idx
}

/// Puts the cursor on the strongest effect of the shown grid.
pub fn cursor_to_strongest(s: &mut AppState) {
    let metric = s.heatmap.metric_name();
    let Some(g) = s.grid() else { return };
    let Some(&best) = ranked(&g, metric).first() else {
        return;
    };
    s.heatmap.cursor = unindex(best, g.shape);
}

/// Moves the cursor to the next (or previous) strongest effect after the
/// one under it, wrapping around.
pub fn step_strongest(s: &mut AppState, forward: bool) -> Option<usize> {
    let metric = s.heatmap.metric_name();
    let g = s.grid()?;
    let order = ranked(&g, metric);
    if order.is_empty() {
        return None;
    }
    let mut cur = s.heatmap.cursor.clone();
    cur.resize(g.shape.len(), 0);
    let at = order.iter().position(|&c| c == g.index(&cur));
    let n = order.len();
    let k = match (at, forward) {
        (None, _) => 0,
        (Some(i), true) => (i + 1) % n,
        (Some(i), false) => (i + n - 1) % n,
    };
    s.heatmap.cursor = unindex(order[k], g.shape);
    Some(k)
}

/// Recomputes the derived result and the uncertainty shading when what
/// they depend on changed; drops them while the shown sweep runs.
pub fn refresh(s: &mut AppState) {
    let sweep = s.selected_sweep;
    let stored = s
        .sweeps
        .get(sweep)
        .filter(|v| v.partial.is_none())
        .and_then(|v| v.stored.as_ref());
    let Some(stored) = stored else {
        let sp = &mut s.heatmap.spread;
        (sp.derived, sp.uncertain, sp.key) = (None, None, None);
        return;
    };
    let sp = &s.heatmap.spread;
    let compare = sp
        .compare
        .filter(|&c| c != sweep)
        .and_then(|c| Some((c, s.sweeps.get(c)?.stored.as_ref()?)));
    let key = Key {
        sweep,
        computed_at: stored.computed_at.clone(),
        pair: sp.pair,
        compare: compare.map(|(c, r)| (c, r.computed_at.clone())),
        metric: s.heatmap.metric,
        shade: sp.shade_uncertain,
    };
    if sp.key.as_ref() == Some(&key) {
        return;
    }
    let dir = s.sweeps[sweep].spec.direction;
    let derived = match (compare, sp.pair) {
        (Some((c, other)), _) => difference(&stored.result, &other.result).map(|result| Derived {
            result,
            what: format!("minus sweep {}", c + 1),
        }),
        (None, Some(i)) => pair_alone(&stored.result, i).map(|result| Derived {
            result,
            what: format!("pair {}/{} alone", i + 1, stored.result.per_pair.len()),
        }),
        (None, None) => None,
    };
    let metric = METRICS[s.heatmap.metric.min(METRICS.len() - 1)];
    let uncertain = key.shade.then(|| {
        let r = derived.as_ref().map_or(&stored.result, |d| &d.result);
        // A difference is centred on zero whichever the direction.
        let dir = if derived.is_some() && compare.is_some() {
            Direction::Denoise
        } else {
            dir
        };
        uncertain_cells(r, metric, dir)
    });
    let sp = &mut s.heatmap.spread;
    sp.derived = derived;
    sp.uncertain = uncertain;
    sp.key = Some(key);
}

/// Turns the shading of uncertain cells on or off, saying what it means.
pub fn toggle_shade(s: &mut AppState) {
    let sp = &mut s.heatmap.spread;
    sp.shade_uncertain = !sp.shade_uncertain;
    let n = s
        .sweep()
        .and_then(|v| v.stored.as_ref())
        .map_or(0, |st| st.result.per_pair.len());
    let msg = match (s.heatmap.spread.shade_uncertain, n) {
        (false, _) => "shading off".to_string(),
        (true, 0 | 1) => "shading on; this sweep has one pair, so no intervals to shade".into(),
        (true, n) => format!("shaded: cells whose 95% interval over {n} pairs crosses zero"),
    };
    s.set_status(Level::Info, msg);
}

/// Compares the shown sweep with the next sweep of the same shape that
/// has a result (after the one compared now); off after the last.
pub fn compare_next(s: &mut AppState) {
    let Some((next, first)) = step_partner(s, s.heatmap.spread.compare) else {
        return s.set_status(
            Level::Warn,
            "no finished result to compare yet: press r to run a sweep",
        );
    };
    let sp = &mut s.heatmap.spread;
    sp.compare = next;
    (sp.pair, sp.beside) = (None, None);
    let msg = match next {
        Some(i) => {
            let v = &s.sweeps[i];
            format!(
                "showing this sweep minus sweep {} ({} {}); v: the next, Esc: back",
                i + 1,
                v.spec.target,
                v.spec.direction
            )
        }
        None if first => NO_PARTNER.into(),
        None => "difference off".into(),
    };
    s.set_status(Level::Info, msg);
}

/// What `v` and `V` say when the shown sweep has no partner at all.
const NO_PARTNER: &str =
    "no other sweep of this shape has a result: run another (e.g. the other direction) first";

/// The partner after `current` (the first when `None`) of the shown sweep,
/// and whether the search started from the first; `None` when the shown
/// sweep has no finished result.
fn step_partner(s: &AppState, current: Option<usize>) -> Option<(Option<usize>, bool)> {
    let shape = s
        .sweep()
        .filter(|v| v.partial.is_none())
        .and_then(|v| v.stored.as_ref())
        .map(|st| st.result.shape.clone())?;
    let start = current.map_or(0, |c| c + 1);
    let next = partners(s, &shape).into_iter().find(|&i| i >= start);
    Some((next, start == 0))
}

/// The sweeps whose result can stand beside (or be subtracted from) the
/// shown one: another sweep with a stored result of `shape`, not running.
fn partners(s: &AppState, shape: &[usize]) -> Vec<usize> {
    (0..s.sweeps.len())
        .filter(|&i| {
            i != s.selected_sweep
                && s.sweeps[i].partial.is_none()
                && s.sweeps[i]
                    .stored
                    .as_ref()
                    .is_some_and(|st| st.result.shape == shape)
        })
        .collect()
}

/// The grid drawn beside the shown one, while side by side is on and the
/// two still have one shape.
pub fn beside_grid(s: &AppState) -> Option<GridRef<'_>> {
    let i = s.heatmap.spread.beside?;
    let shape = s.grid()?.shape.to_vec();
    if !partners(s, &shape).contains(&i) {
        return None;
    }
    s.sweeps[i].grid()
}

/// Shows the next sweep of the same shape beside the shown one (after
/// the one beside it now); off after the last.
pub fn beside_next(s: &mut AppState) {
    let Some((next, first)) = step_partner(s, s.heatmap.spread.beside) else {
        return s.set_status(
            Level::Warn,
            "no result to show side by side yet: press r to run a sweep",
        );
    };
    let sp = &mut s.heatmap.spread;
    sp.beside = next;
    (sp.pair, sp.compare) = (None, None);
    let msg = match next {
        Some(i) => {
            let v = &s.sweeps[i];
            format!(
                "sweep {} beside sweep {} ({} {}): one colour scale, one cursor; V: the next, Esc: back",
                s.selected_sweep + 1,
                i + 1,
                v.spec.target,
                v.spec.direction
            )
        }
        None if first => NO_PARTNER.into(),
        None => "side by side off".into(),
    };
    s.set_status(Level::Info, msg);
}
