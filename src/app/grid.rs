//! A read-only view of a sweep's values for the heatmap: finished results
//! and results still filling in look the same to the pane.
//!
//! A result has two or three axes. The heatmap shows the last two as rows
//! and columns; with three, the first is a *page* (a component of
//! `heads_every`, a layer of `head_out_by_pos`) flipped with `<`/`>`.
//!
//! The colour scale is centred on "no effect": the value of the unpatched
//! base run (the corrupted baseline when denoising, the clean baseline when
//! noising), so white means "this patch changed nothing".

use crate::patching::metrics::{MetricDef, DEFAULT_METRIC, REGISTRY};
use crate::patching::result::Baselines;
use crate::patching::{Direction, Metrics, SweepResult};

use super::messages::SweepStart;

/// Values of one sweep, done or partial.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    Done(&'a SweepResult),
    /// The finished cells (normalised by the worker), and the baselines
    /// once the engine has run the unpatched prompts.
    Partial(&'a [Option<Metrics>], Option<&'a Baselines>),
}

#[derive(Debug, Clone, Copy)]
pub struct GridRef<'a> {
    pub axes: &'a [String],
    pub shape: &'a [usize],
    pub components: &'a [String],
    /// Clean tokens, for `pos` labels; the position labels instead when
    /// the pairs were aligned by label (`labelled`).
    pub tokens: &'a [String],
    /// The position axis runs over a dataset's labels, not token positions.
    pub labelled: bool,
    pub corrupted_tokens: &'a [String],
    pub direction: Direction,
    pub values: Values<'a>,
}

/// Cursor, metric and zoom of the heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapState {
    /// Multi-index into the shown sweep's axes.
    pub cursor: Vec<usize>,
    /// Index into the metric registry ([`REGISTRY`]).
    pub metric: usize,
    /// Cell width in characters (1..=8): the narrowest width; cells widen
    /// to fill the pane when the grid has room.
    pub zoom: u16,
    /// What the grid shows besides the plain sweep, and its caches
    /// (`spread`: one pair alone, a difference of two sweeps, cells whose
    /// interval crosses zero shaded).
    pub spread: super::spread::SpreadView,
}

impl Default for HeatmapState {
    fn default() -> Self {
        Self {
            cursor: vec![],
            metric: DEFAULT_METRIC.0,
            zoom: 4,
            spread: Default::default(),
        }
    }
}

impl HeatmapState {
    pub fn metric_def(&self) -> &'static MetricDef {
        &REGISTRY[self.metric.min(REGISTRY.len() - 1)]
    }

    pub fn metric_name(&self) -> &'static str {
        self.metric_def().name
    }

    /// Makes the cursor valid for `shape` (keeping what still fits).
    pub fn fit(&mut self, shape: &[usize]) {
        if self.cursor.len() != shape.len() {
            self.cursor = vec![0; shape.len()];
            // Start on the last row's last column: the final position of
            // the last layer is where effects usually show.
            if let (Some(c), Some(n)) = (self.cursor.last_mut(), shape.last()) {
                *c = n.saturating_sub(1);
            }
        }
        for (c, n) in self.cursor.iter_mut().zip(shape) {
            *c = (*c).min(n.saturating_sub(1));
        }
    }

    /// Moves along axis `axis` of a `shape` by `delta`, clamped.
    pub fn step(&mut self, shape: &[usize], axis: usize, delta: i32) {
        self.fit(shape);
        if let (Some(c), Some(n)) = (self.cursor.get_mut(axis), shape.get(axis)) {
            *c = (*c as i32 + delta).clamp(0, *n as i32 - 1) as usize;
        }
    }
}

impl<'a> GridRef<'a> {
    pub fn from_result(
        r: &'a SweepResult,
        tokens: &'a [String],
        corrupted_tokens: &'a [String],
        direction: Direction,
    ) -> Self {
        let labelled = !r.position_labels.is_empty();
        GridRef {
            axes: &r.axes,
            shape: &r.shape,
            components: &r.components,
            tokens: if labelled { &r.position_labels } else { tokens },
            labelled,
            corrupted_tokens,
            direction,
            values: Values::Done(r),
        }
    }

    pub fn from_partial(
        s: &'a SweepStart,
        cells: &'a [Option<Metrics>],
        baselines: Option<&'a Baselines>,
        direction: Direction,
    ) -> Self {
        let labelled = !s.position_labels.is_empty();
        GridRef {
            axes: &s.axes,
            shape: &s.shape,
            components: &s.components,
            tokens: if labelled {
                &s.position_labels
            } else {
                &s.clean_tokens.strings
            },
            labelled,
            corrupted_tokens: &s.corrupted_tokens.strings,
            direction,
            values: Values::Partial(cells, baselines),
        }
    }

    pub fn n_cells(&self) -> usize {
        self.shape.iter().product()
    }

    /// `(page axis, row axis, column axis)`; no page axis for 2-axis results.
    pub fn layout(&self) -> (Option<usize>, usize, usize) {
        match self.shape.len() {
            0 | 1 => (None, 0, 0),
            2 => (None, 0, 1),
            _ => (Some(0), 1, 2),
        }
    }

    pub fn index(&self, idx: &[usize]) -> usize {
        idx.iter()
            .zip(self.shape)
            .fold(0, |acc, (i, n)| acc * n + i)
    }

    /// Every metric of a cell, if it is computed.
    pub fn metrics(&self, cell: usize) -> Option<Metrics> {
        match self.values {
            Values::Done(r) => {
                let m = r.cell(cell);
                m.logit_diff().is_finite().then_some(m)
            }
            Values::Partial(cells, _) => *cells.get(cell)?,
        }
    }

    pub fn value(&self, metric: &str, cell: usize) -> Option<f32> {
        self.metrics(cell)?.get(metric).filter(|v| v.is_finite())
    }

    /// The value meaning "no effect" for `metric`, if known: the metric of
    /// the unpatched base run.
    pub fn centre(&self, metric: &str) -> Option<f32> {
        let b = match self.values {
            Values::Done(r) => &r.baselines,
            Values::Partial(_, b) => b?,
        };
        let base = match self.direction {
            Direction::Denoise => &b.corrupted,
            Direction::Noise => &b.clean,
        };
        base.get(metric).filter(|v| v.is_finite())
    }

    /// Centre and half-range of the colour scale for `metric` over all cells.
    pub fn scale(&self, metric: &str) -> (f32, f32) {
        let vals: Vec<f32> = (0..self.n_cells())
            .filter_map(|c| self.value(metric, c))
            .collect();
        let centre = self.centre(metric).unwrap_or_else(|| {
            // No baselines yet (no cell has finished): the middle of the range.
            let (lo, hi) = vals
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                });
            if lo.is_finite() {
                (lo + hi) / 2.0
            } else {
                0.0
            }
        });
        let half = vals
            .iter()
            .map(|v| (v - centre).abs())
            .fold(0.0f32, f32::max);
        (centre, if half > 1e-9 { half } else { 1.0 })
    }

    /// A label for index `i` of axis `axis`: layer and head numbers, token
    /// strings for positions, component names.
    pub fn label(&self, axis: usize, i: usize) -> String {
        match self.axes.get(axis).map(String::as_str) {
            Some("pos") | Some("dest_pos") => {
                self.tokens.get(i).cloned().unwrap_or_else(|| i.to_string())
            }
            Some("component") => self
                .components
                .get(i)
                .cloned()
                .unwrap_or_else(|| i.to_string()),
            _ => i.to_string(),
        }
    }

    /// A short name for an axis (`L` for layer, `H` for head, ...).
    pub fn axis_name(&self, axis: usize) -> &str {
        self.axes.get(axis).map(String::as_str).unwrap_or("")
    }
}
