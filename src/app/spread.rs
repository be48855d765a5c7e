//! How much to trust a cell: the heatmap's views of a sweep over many
//! prompt pairs.
//!
//! A stored result holds, besides the mean per cell, every pair's value
//! (`per_pair`) and baselines (`pair_baselines`). From them this module
//! derives what the workbench shows of the spread:
//!
//! - the selected cell's per-pair values, mean and seeded bootstrap 95%
//!   interval ([`cell_spread`], computed when drawn: one cell is cheap);
//! - which cells' interval of the *effect* crosses zero ([`SpreadView::
//!   uncertain`], cached here because every cell costs a bootstrap). The
//!   effect of a pair is its patched value minus its own unpatched base run
//!   (the corrupted run when denoising, the clean one when noising), the
//!   same "no effect" the colour scale is centred on;
//! - one pair alone (its own values, as a single-pair investigation) or
//!   the difference of two sweeps of one shape (shown minus compared, per
//!   pair too when both ran on the same pairs, so the interval is that of
//!   the paired difference), as a derived result the grid draws instead of
//!   the stored one ([`SpreadView::derived`]);
//! - another sweep of the same shape beside the shown one (noising and
//!   denoising, two datasets), drawn on one colour scale with one cursor
//!   (`spread_keys::beside_grid`);
//! - the cells ranked by the size of their effect, for the cursor to start
//!   on the strongest and step to the next (`spread_keys::ranked`).
//!
//! This module holds the data and the computations; `spread_keys` applies
//! them to the state (keys, and `refresh`, which renews the caches at the
//! end of every `update`, so rendering stays a pure function of the state).

use std::collections::BTreeMap;

use crate::data::stats::{resample_indices, summarize, StatsOptions, Summary};
use crate::patching::metrics::{lookup, Compute};
use crate::patching::result::Baselines;
use crate::patching::{Direction, Metrics, SweepResult};

/// The spread options and caches of the heatmap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpreadView {
    /// Shade cells whose 95% interval of the effect crosses zero.
    pub shade_uncertain: bool,
    /// Show this pair alone (index into the result's pairs).
    pub pair: Option<usize>,
    /// Show the shown sweep minus this sweep (index into the session's sweeps).
    pub compare: Option<usize>,
    /// Show this sweep beside the shown one, on one colour scale and with
    /// one cursor (index into the session's sweeps).
    pub beside: Option<usize>,
    /// The result drawn instead of the stored one, with what it is.
    pub derived: Option<Derived>,
    /// Per cell of the drawn result: whether its interval crosses zero
    /// (`None`: too few pairs or values to tell).
    pub uncertain: Option<Vec<Option<bool>>>,
    /// What the caches were computed from.
    pub(crate) key: Option<Key>,
}

/// A result derived from stored ones (one pair alone, a difference).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub result: SweepResult,
    /// A short description for the heatmap's title.
    pub what: String,
}

/// What the caches depend on; cheap to compare on every update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) sweep: usize,
    pub(crate) computed_at: String,
    pub(crate) pair: Option<usize>,
    pub(crate) compare: Option<(usize, String)>,
    pub(crate) metric: usize,
    pub(crate) shade: bool,
}

/// The statistics of one cell over pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpread {
    /// Each pair's value of the metric at the cell.
    pub values: Vec<f32>,
    /// Mean, spread and interval of `values`.
    pub summary: Summary,
    /// For a normalised metric: the TransformerLens form (the mean raw
    /// value normalised by the dataset-mean baselines), which the grid
    /// shows, while `summary` is over per-pair normalised values.
    pub dataset_normalized: Option<f32>,
}

/// The statistics options the workbench uses: the CLI's defaults (1000
/// resamples, seed 0), so a cell reads the same as `sweep --format json`.
pub fn stats_options() -> StatsOptions {
    StatsOptions::default()
}

/// Pair `i`'s values of `metric` at `cell` for every pair of `r`.
pub fn pair_values(r: &SweepResult, metric: &str, cell: usize) -> Vec<f32> {
    r.per_pair
        .iter()
        .map(|p| {
            p.get(metric)
                .and_then(|v| v.get(cell))
                .copied()
                .unwrap_or(f32::NAN)
        })
        .collect()
}

/// The selected cell's spread, when the result has more than one pair.
pub fn cell_spread(r: &SweepResult, metric: &str, cell: usize) -> Option<CellSpread> {
    if r.per_pair.len() < 2 {
        return None;
    }
    let values = pair_values(r, metric, cell);
    let draws = resample_indices(values.len(), &stats_options());
    let summary = summarize(&values, &draws);
    let dataset_normalized = lookup(metric)
        .filter(|(_, d)| matches!(d.compute, Compute::Normalized { .. }))
        .and_then(|_| r.value(metric, cell));
    Some(CellSpread {
        values,
        summary,
        dataset_normalized,
    })
}

/// Each pair's "no effect" value of `metric`: its unpatched base run.
fn pair_bases(r: &SweepResult, metric: &str, dir: Direction) -> Vec<f32> {
    let normalized =
        lookup(metric).is_some_and(|(_, d)| matches!(d.compute, Compute::Normalized { .. }));
    r.pair_baselines
        .iter()
        .map(|b| {
            let base = match dir {
                Direction::Denoise => &b.corrupted,
                Direction::Noise => &b.clean,
            };
            match base.get(metric).filter(|v| v.is_finite()) {
                Some(v) => v,
                // A normalised metric is 0 at the corrupted run, 1 at the clean.
                None if normalized => match dir {
                    Direction::Denoise => 0.0,
                    Direction::Noise => 1.0,
                },
                None => f32::NAN,
            }
        })
        .collect()
}

/// Per cell: whether the 95% interval of the mean effect crosses zero.
pub fn uncertain_cells(r: &SweepResult, metric: &str, dir: Direction) -> Vec<Option<bool>> {
    let n = r.per_pair.len();
    let bases = pair_bases(r, metric, dir);
    if n < 2 || bases.len() != n {
        return vec![None; r.n_cells()];
    }
    let draws = resample_indices(n, &stats_options());
    (0..r.n_cells())
        .map(|c| {
            let effects: Vec<f32> = pair_values(r, metric, c)
                .iter()
                .zip(&bases)
                .map(|(x, b)| x - b)
                .collect();
            let s = summarize(&effects, &draws);
            (s.ci_low.is_finite() && s.ci_high.is_finite())
                .then_some(s.ci_low <= 0.0 && s.ci_high >= 0.0)
        })
        .collect()
}

/// Pair `i` of `r` alone: its values as the means, its baselines as the
/// baselines.
pub fn pair_alone(r: &SweepResult, i: usize) -> Option<SweepResult> {
    let values = r.per_pair.get(i)?.clone();
    let baselines = r.pair_baselines.get(i).cloned().unwrap_or(r.baselines);
    Some(SweepResult {
        metrics: values.clone(),
        per_pair: vec![values],
        baselines,
        pair_baselines: vec![baselines],
        ..r.clone()
    })
}

/// `a − b` cell by cell (and pair by pair when both have the same pairs);
/// baselines zero, so the colour scale is centred on "no difference".
/// `None` when the shapes differ.
pub fn difference(a: &SweepResult, b: &SweepResult) -> Option<SweepResult> {
    if a.shape != b.shape {
        return None;
    }
    let sub = |x: &BTreeMap<String, Vec<f32>>, y: &BTreeMap<String, Vec<f32>>| {
        x.iter()
            .filter_map(|(k, xs)| {
                let ys = y.get(k)?;
                let d = xs.iter().zip(ys).map(|(p, q)| p - q).collect();
                Some((k.clone(), d))
            })
            .collect::<BTreeMap<String, Vec<f32>>>()
    };
    let paired = a.per_pair.len() == b.per_pair.len();
    let per_pair = if paired {
        a.per_pair
            .iter()
            .zip(&b.per_pair)
            .map(|(x, y)| sub(x, y))
            .collect()
    } else {
        vec![]
    };
    let zero = Baselines {
        clean: Metrics::from_values([0.0; crate::patching::metrics::N_METRICS]),
        corrupted: Metrics::from_values([0.0; crate::patching::metrics::N_METRICS]),
    };
    Some(SweepResult {
        metrics: sub(&a.metrics, &b.metrics),
        pair_baselines: vec![zero; per_pair.len()],
        per_pair,
        baselines: zero,
        ..a.clone()
    })
}
