//! `SweepResult`: every metric of every cell, mean over prompt pairs and per
//! pair, with both baselines. Plain data (no tensors): it crosses to the UI
//! and is stored in sessions.

use std::collections::BTreeMap;
use std::time::Duration;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::metrics::{Metrics, METRICS};
use super::plan::Plan;
use super::runs::{PairBaselines, RunPair};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    pub clean: Metrics,
    pub corrupted: Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub sweep_ms: f64,
    pub forward_passes: usize,
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub axes: Vec<String>,
    pub shape: Vec<usize>,
    /// Labels of the `component` axis (`heads_every`, `block_every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Metric name -> row-major values (mean over prompt pairs; NaN where a
    /// cell does not exist).
    pub metrics: BTreeMap<String, Vec<f32>>,
    /// The same per prompt pair (one entry per pair, in order).
    pub per_pair: Vec<BTreeMap<String, Vec<f32>>>,
    pub baselines: Baselines,
    pub pair_baselines: Vec<Baselines>,
    pub timing: Timing,
    /// `exact`, or `attribution` for first-order estimates (only
    /// `logit_diff` and its normalised form are filled in).
    #[serde(default = "exact", skip_serializing_if = "is_exact")]
    pub method: String,
    /// When pairs were aligned by position labels: the labels, which the
    /// `pos` (or `dest_pos`) axis runs over instead of token positions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub position_labels: Vec<String>,
}

fn exact() -> String {
    "exact".into()
}

fn is_exact(m: &str) -> bool {
    m == "exact"
}

impl SweepResult {
    pub fn n_cells(&self) -> usize {
        self.shape.iter().product()
    }

    /// The value of `metric` at a row-major cell index.
    pub fn value(&self, metric: &str, cell: usize) -> Option<f32> {
        self.metrics.get(metric).and_then(|v| v.get(cell)).copied()
    }

    /// Every metric at one cell.
    /// Every metric at one cell (NaN for metrics the result lacks).
    pub fn cell(&self, cell: usize) -> Metrics {
        Metrics::from_values(std::array::from_fn(|i| {
            self.value(METRICS[i], cell).unwrap_or(f32::NAN)
        }))
    }

    /// Metrics of this build that the result lacks (a result stored by a
    /// build with fewer metrics), in registry order.
    pub fn missing_metrics(&self) -> Vec<&'static str> {
        METRICS
            .iter()
            .copied()
            .filter(|m| {
                !self.metrics.contains_key(*m) || self.per_pair.iter().any(|p| !p.contains_key(*m))
            })
            .collect()
    }

    /// Row-major index of a multi-index.
    pub fn index(&self, idx: &[usize]) -> usize {
        idx.iter()
            .zip(&self.shape)
            .fold(0, |acc, (i, n)| acc * n + i)
    }
}

fn columns(cells: &[Metrics]) -> BTreeMap<String, Vec<f32>> {
    METRICS
        .iter()
        .enumerate()
        .map(|(i, m)| (m.to_string(), cells.iter().map(|c| c.values()[i]).collect()))
        .collect()
}

/// Means of the per-pair baselines, with their normalised logit diffs (1 and 0).
pub(crate) fn mean_baselines(baselines: &[PairBaselines]) -> Baselines {
    let clean = Metrics::mean(&baselines.iter().map(|b| b.clean).collect::<Vec<_>>());
    let corrupted = Metrics::mean(&baselines.iter().map(|b| b.corrupted).collect::<Vec<_>>());
    normalized_baselines(clean, corrupted)
}

/// Both baselines with their normalised metrics filled in (1 and 0).
fn normalized_baselines(mut clean: Metrics, mut corrupted: Metrics) -> Baselines {
    let (c, k) = (clean, corrupted);
    clean.normalize(&c, &k);
    corrupted.normalize(&c, &k);
    Baselines { clean, corrupted }
}

/// The cell layout of a sweep without its patch operations: what a result
/// needs from the plan (a merge of part files has no plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub axes: Vec<String>,
    pub shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Row-major indices of cells that do not exist (NaN in the result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<usize>,
}

impl Layout {
    pub fn of(plan: &Plan) -> Layout {
        Layout {
            axes: plan.axes.clone(),
            shape: plan.shape.clone(),
            components: plan.components.clone(),
            absent: (0..plan.n_cells())
                .filter(|&c| plan.cells[c].is_none())
                .collect(),
        }
    }

    pub fn n_cells(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Averages run values over noise samples (per pair) and pairs, and fills
/// in the normalised metrics.
///
/// Normalisation uses means: `(mean x − mean corrupted) / (mean clean −
/// mean corrupted)`, as TransformerLens's IOI notebooks do over a batch.
pub(crate) fn assemble(
    plan: &Plan,
    runs: &[RunPair],
    baselines: &[PairBaselines],
    values: Vec<Vec<Metrics>>,
    forward_passes: usize,
    elapsed: Duration,
    device: &Device,
) -> SweepResult {
    let run_pairs: Vec<usize> = runs.iter().map(|r| r.pair).collect();
    let timing = Timing {
        sweep_ms: elapsed.as_secs_f64() * 1e3,
        forward_passes,
        device: crate::model::device::device_name(device),
    };
    assemble_values(&Layout::of(plan), &run_pairs, baselines, values, timing)
}

/// [`assemble`] from a layout and the pair of each run (`run_pairs[run]`):
/// the same arithmetic, so a merge of parts gives the same bits.
pub fn assemble_values(
    layout: &Layout,
    run_pairs: &[usize],
    baselines: &[PairBaselines],
    values: Vec<Vec<Metrics>>,
    timing: Timing,
) -> SweepResult {
    let n_pairs = baselines.len();
    let n_cells = layout.n_cells();
    let absent = |c: usize| layout.absent.binary_search(&c).is_ok();
    let nan = Metrics::nan();
    let mut per_pair_cells: Vec<Vec<Metrics>> = Vec::with_capacity(n_pairs);
    for (p, b) in baselines.iter().enumerate() {
        let rows: Vec<&Vec<Metrics>> = run_pairs
            .iter()
            .zip(&values)
            .filter(|(r, _)| **r == p)
            .map(|(_, v)| v)
            .collect();
        let cells: Vec<Metrics> = (0..n_cells)
            .map(|c| {
                if absent(c) {
                    return nan;
                }
                let mut m = Metrics::mean(&rows.iter().map(|v| v[c]).collect::<Vec<_>>());
                m.normalize(&b.clean, &b.corrupted);
                m
            })
            .collect();
        per_pair_cells.push(cells);
    }
    let means = mean_baselines(baselines);
    let mean_cells: Vec<Metrics> = (0..n_cells)
        .map(|c| {
            if absent(c) {
                return nan;
            }
            let mut m = Metrics::mean(&per_pair_cells.iter().map(|v| v[c]).collect::<Vec<_>>());
            m.normalize(&means.clean, &means.corrupted);
            m
        })
        .collect();
    let pair_baselines = baselines
        .iter()
        .map(|b| normalized_baselines(b.clean, b.corrupted))
        .collect();
    SweepResult {
        axes: layout.axes.clone(),
        shape: layout.shape.clone(),
        components: layout.components.clone(),
        metrics: columns(&mean_cells),
        per_pair: per_pair_cells.iter().map(|c| columns(c)).collect(),
        baselines: means,
        pair_baselines,
        timing,
        method: exact(),
        position_labels: vec![],
    }
}
