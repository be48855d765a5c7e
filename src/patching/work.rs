//! A sweep's exact work as an ordered list of units, and who computes which.
//!
//! A [`WorkUnit`] is one batched forward pass of the fast engine (cells
//! that start at the same block, of one run or of several runs of one
//! prompt length, with their first changed positions), or the cells of a (layer group, run) whose patch changes
//! nothing and which cost nothing. The list is canonical: it depends only on
//! the model, the prompts, the spec and the batching options, never on who
//! runs it, so a cell's value does not depend on which process computed it.
//! That matters because a batched forward is not bit-identical to the same
//! cell in another batch (matrix-multiply blocking and packed attention
//! reductions change with the batch's shape); sharding whole units keeps
//! every cell in the batch an unsharded run puts it in.
//!
//! A [`WorkControl`] decides, once the units are planned, which to compute
//! ([`Selection::Run`]), which belong to someone else ([`Selection::Skip`],
//! another shard) and which are already known ([`Selection::Known`], a
//! checkpoint), and receives every finished unit. [`shard_of`] splits units
//! into contiguous runs of roughly equal cost ([`WorkUnit::cost`], the work
//! measure of `analysis::estimate`: blocks run × positions recomputed, plus
//! a per-forward overhead).

use std::collections::BTreeMap;

use crate::model::ModelConfig;

use super::batches::{batch_rows, ChangeCache};
use super::engine::{layer_groups, split_unchanged, EngineOptions, Method};
use super::error::SweepError;
use super::metrics::Metrics;
use super::plan::Plan;
use super::runs::RunPair;

/// One cell of one run in a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct UnitRow {
    /// The run (prompt pair × noise sample) patched.
    pub run: usize,
    pub cell: usize,
    /// First changed position; the prompt length for a free row (nothing
    /// recomputed).
    pub p0: usize,
}

/// One unit of exact work, in the order the engine runs them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkUnit {
    /// The block where the unit's patches start (its layer group).
    pub layer: usize,
    /// The token length of the runs it resumes.
    pub n_pos: usize,
    pub rows: Vec<UnitRow>,
    /// Whether the unit is a forward pass; `false`: its cells reproduce
    /// their base run and take its metrics.
    pub forward: bool,
}

/// Per-forward overhead in the cost measure, in units of one position
/// through one block: a batched forward has a fixed cost (hook setup, the
/// unembedding of its rows) that a cost of work alone would miss.
const FORWARD_OVERHEAD: usize = 8;

impl WorkUnit {
    /// Relative cost: blocks run × positions recomputed over the rows,
    /// plus a fixed overhead per forward; free units cost nothing.
    pub fn cost(&self, cfg: &ModelConfig) -> u64 {
        if !self.forward {
            return 0;
        }
        let tokens: usize = self
            .rows
            .iter()
            .map(|r| self.n_pos - r.p0.min(self.n_pos))
            .sum();
        let blocks = cfg.n_layers - self.layer.min(cfg.n_layers);
        (blocks * tokens.max(1) + FORWARD_OVERHEAD) as u64
    }
}

/// What to do with a planned unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Compute it here.
    Run,
    /// Another process computes it (its cells stay NaN here).
    Skip,
    /// Already computed (read from a checkpoint): one value per row.
    Known(Vec<Metrics>),
}

/// Chooses the units a run computes and receives each one it finishes.
pub trait WorkControl {
    /// Called once, with every unit in canonical order and the prompt
    /// pair of each run (`run_pairs[run]`), before any unit is run.
    fn select(
        &mut self,
        units: &[WorkUnit],
        run_pairs: &[usize],
    ) -> Result<Vec<Selection>, SweepError>;
    /// Called after unit `index` is computed (not for known or skipped ones).
    fn done(&mut self, index: usize, unit: &WorkUnit, values: &[Metrics])
        -> Result<(), SweepError>;
}

/// The whole sweep, here: every unit runs.
pub struct Everything;

impl WorkControl for Everything {
    fn select(&mut self, units: &[WorkUnit], _: &[usize]) -> Result<Vec<Selection>, SweepError> {
        Ok(vec![Selection::Run; units.len()])
    }
    fn done(&mut self, _: usize, _: &WorkUnit, _: &[Metrics]) -> Result<(), SweepError> {
        Ok(())
    }
}

/// Plans every unit of an exact sweep, layer group by layer group (the
/// groups of `groups`, whose cells every run's plan shares): for the fast
/// method, each run's free cells first (one unit per run), then the batches
/// of the active rows of every run of one prompt length together (lengths
/// in increasing order), so many prompt pairs share batches; for the naive
/// method, one unit per run and cell. `plan_of(run)` is each run's plan.
pub(crate) fn plan_units<'p>(
    cfg: &ModelConfig,
    groups: &Plan,
    plan_of: &dyn Fn(usize) -> &'p Plan,
    runs: &[RunPair],
    opts: &EngineOptions,
) -> Result<Vec<WorkUnit>, SweepError> {
    let mut changed: Vec<ChangeCache> = runs.iter().map(|_| Default::default()).collect();
    let mut units = Vec::new();
    for (layer, cells) in layer_groups(groups, opts.cells.as_deref()) {
        if opts.method != Method::Fast {
            for (ri, run) in runs.iter().enumerate() {
                units.extend(cells.iter().map(|&cell| WorkUnit {
                    layer,
                    n_pos: run.base_tokens.len(),
                    rows: vec![UnitRow {
                        run: ri,
                        cell,
                        p0: 0,
                    }],
                    forward: true,
                }));
            }
            continue;
        }
        // Active rows by prompt length: a batch resumes runs of one length.
        let mut by_len: BTreeMap<usize, Vec<UnitRow>> = BTreeMap::new();
        for (ri, run) in runs.iter().enumerate() {
            let n_pos = run.base_tokens.len();
            let (active, unchanged) = split_unchanged(plan_of(ri), run, &cells, &mut changed[ri])?;
            if !unchanged.is_empty() {
                units.push(WorkUnit {
                    layer,
                    n_pos,
                    rows: unchanged
                        .into_iter()
                        .map(|cell| UnitRow {
                            run: ri,
                            cell,
                            p0: n_pos,
                        })
                        .collect(),
                    forward: false,
                });
            }
            by_len
                .entry(n_pos)
                .or_default()
                .extend(
                    active
                        .into_iter()
                        .map(|(cell, p0)| UnitRow { run: ri, cell, p0 }),
                );
        }
        for (n_pos, rows) in by_len {
            let ops = |r: &UnitRow| plan_of(r.run).cells[r.cell].as_ref();
            units.extend(
                batch_rows(rows, &ops, cfg, n_pos, opts)
                    .into_iter()
                    .map(|rows| WorkUnit {
                        layer,
                        n_pos,
                        rows,
                        forward: true,
                    }),
            );
        }
    }
    Ok(units)
}

/// Which of `n` shards each unit belongs to: contiguous stretches of the
/// canonical order holding about `1/n` of the total cost each (a unit goes
/// to the shard where the middle of its cost falls). Free units go with
/// their neighbours. Deterministic: a function of the costs alone.
pub fn shard_of(costs: &[u64], n: usize) -> Vec<usize> {
    let n = n.max(1) as u128;
    let total: u128 = costs.iter().map(|&c| c as u128).sum::<u128>().max(1);
    let mut before = 0u128;
    costs
        .iter()
        .map(|&c| {
            let mid = 2 * before + c as u128; // twice the unit's midpoint
            before += c as u128;
            ((mid * n) / (2 * total)).min(n - 1) as usize
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn shards_are_contiguous_cover_everything_and_balance_cost() {
        let costs: Vec<u64> = (0..100).map(|i| 1 + (i % 7) * 10).collect();
        for n in 1..=7 {
            let s = shard_of(&costs, n);
            assert!(s.windows(2).all(|w| w[0] <= w[1]), "contiguous");
            assert_eq!(*s.last().unwrap(), n - 1);
            assert_eq!(s[0], 0);
            let total: u64 = costs.iter().sum();
            let max_unit = *costs.iter().max().unwrap();
            for k in 0..n {
                let c: u64 = costs
                    .iter()
                    .zip(&s)
                    .filter(|x| *x.1 == k)
                    .map(|x| x.0)
                    .sum();
                let ideal = total / n as u64;
                assert!(
                    c.abs_diff(ideal) <= max_unit,
                    "shard {k}/{n}: {c} vs {ideal}"
                );
            }
        }
    }

    #[test]
    fn more_shards_than_units_leaves_some_empty() {
        let s = shard_of(&[5, 5], 4);
        assert_eq!(s, vec![1, 3]);
    }
}
