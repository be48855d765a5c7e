//! Executes a sweep: the naive reference (one full forward pass per cell)
//! and the fast path, which must give the same numbers.
//!
//! The fast path rests on three exact facts about a patched run:
//! - a patch inside block `l` cannot change anything before block `l`, so
//!   the run resumes from the base run's cached `resid_pre` at `l`;
//! - a patch whose first changed position is `p` cannot change positions
//!   before `p` (causal attention), so only positions `p..T` are recomputed,
//!   attending to cached keys/values for the earlier ones;
//! - a patch that changes nothing (the source activation equals the base
//!   activation everywhere it writes, as for positions before the first
//!   differing token) reproduces the base run, so no forward is needed;
//! - a patch of block `l`'s `hook_z` alone (`head_out` cells) leaves that
//!   block's queries, keys, values and pattern as the base run computed
//!   them, so the run resumes from the base run's cached `hook_z` at the
//!   output projection (`ForwardOptions::resume_z`), not at `resid_pre`.
//!
//! Cells sharing a start layer are batched along the batch dimension, each
//! row carrying its own mask; only the last position is unembedded. Work is
//! ordered layer group by layer group, so finished cells can be reported
//! (and drawn) while the rest runs, and the cancel flag is checked between
//! batches.
//!
//! Many prompt pairs share batches: the rows of a batch may patch
//! different pairs' runs (of one token length), each resuming from its own
//! cached residual stream and attending to its own cached keys/values, so
//! an N-pair sweep costs about N × the work of one, not N × its overhead
//! of small forward passes. Pairs of different lengths run in separate
//! batches; on a position-indexed target they line up by position labels
//! (each pair gets its own plan, the result's position axis runs over the
//! labels), and without labels they must share a length.
//!
//! `run_sweep` reads as its steps: check the inputs, plan the cells, run
//! the unpatched runs, evaluate the cells (exactly, or by attribution),
//! assemble the result. Batching lives in `batches.rs`, the forwards of a
//! batch in `execute.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{HookPoint, Transformer};

use super::batches::{first_changed, ChangeCache};
use super::error::SweepError;
use super::execute::{fast_rows, naive_cell};
use super::metrics::Metrics;
use super::plan::{has_position_axis, plan, plan_labeled, Plan, PositionLabels};
use super::prepare::{PairError, PreparedPair};
use super::result::{assemble, mean_baselines, Baselines, SweepResult};
use super::runs::{build_runs, PairBaselines, RunPair};
use super::spec::SweepSpec;
use super::work::{plan_units, Everything, Selection, WorkControl, WorkUnit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Batched, with prefix and causal reuse.
    Fast,
    /// One full forward pass per cell: the reference.
    Naive,
    /// First-order estimate of `logit_diff` from one backward pass per run
    /// (attribution patching); other metrics are NaN.
    Attribution,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub method: Method,
    /// Bytes of activations one batch may use (`--max-batch-mem`).
    pub max_batch_mem: usize,
    /// Upper bound on rows × recomputed positions per batch; beyond a few
    /// hundred the matrix multiplies are already efficient.
    pub max_batch_tokens: usize,
    /// Pack rows of different lengths into one token axis (no padding
    /// work); off = dense blocks from each batch's first changed position.
    pub packed: bool,
    /// Evaluate only these cells (row-major indices); the rest are NaN.
    /// Used to check an attribution estimate against exact patching.
    pub cells: Option<Vec<usize>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            method: Method::Fast,
            max_batch_mem: 1 << 30,
            max_batch_tokens: 512,
            packed: true,
            cells: None,
        }
    }
}

/// Progress of a running sweep.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Cell evaluations done (cells × prompt pairs × noise samples).
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
    pub eta: Option<Duration>,
    pub forward_passes: usize,
    /// Cells whose values are now final, with their metrics averaged over
    /// prompt pairs and noise samples (normalised with `baselines`).
    pub finished: Vec<(usize, Metrics)>,
    /// The clean and corrupted baselines (means over pairs), known once the
    /// unpatched runs are done.
    pub baselines: Baselines,
}

/// Runs `spec` over `pairs`.
pub fn run_sweep(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
    opts: &EngineOptions,
    cancel: Option<&AtomicBool>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<SweepResult, SweepError> {
    run_sweep_labeled(model, pairs, None, spec, opts, cancel, on_progress)
}

/// Runs `spec` over `pairs`, whose positions may be named by `labels`
/// (then a position-indexed result has one column per label).
pub fn run_sweep_labeled(
    model: &Transformer,
    pairs: &[PreparedPair],
    labels: Option<&PositionLabels>,
    spec: &SweepSpec,
    opts: &EngineOptions,
    cancel: Option<&AtomicBool>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<SweepResult, SweepError> {
    run_sweep_with(
        model,
        pairs,
        labels,
        spec,
        opts,
        &mut Everything,
        cancel,
        on_progress,
    )
}

/// Runs the part of `spec` over `pairs` (positions named by `labels`, if
/// any) that `control` selects (a shard, or what a checkpoint lacks);
/// cells outside it are NaN in the result. Exact methods only: attribution
/// has no units and runs whole.
#[allow(clippy::too_many_arguments)]
pub fn run_sweep_with(
    model: &Transformer,
    pairs: &[PreparedPair],
    labels: Option<&PositionLabels>,
    spec: &SweepSpec,
    opts: &EngineOptions,
    control: &mut dyn WorkControl,
    cancel: Option<&AtomicBool>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<SweepResult, SweepError> {
    let start = Instant::now();
    if opts.method == Method::Attribution {
        model.require_float_weights("attribution patching")?;
    }
    let plans = plan_pairs(model, pairs, labels, spec)?;
    let hooks = patched_hooks(&plans.unique[0]);
    let (runs, baselines, passes) = build_runs(model, pairs, spec, &hooks)?;
    let mut sweep = Sweep {
        model,
        plans: &plans,
        runs: &runs,
        means: mean_baselines(&baselines),
        start,
        passes,
        cancel,
        on_progress,
    };
    let values = match opts.method {
        Method::Attribution => sweep.attribution()?,
        Method::Fast | Method::Naive => sweep.exact(opts, control)?,
    };
    let mut result = finish(sweep, &baselines, values, opts.method);
    if let Some(l) = labels.filter(|_| has_position_axis(&model.cfg, spec)) {
        result.position_labels = l.names.clone();
    }
    Ok(result)
}

/// The plan of every pair: one shared plan when the pairs share a length
/// (or the target has no position axis), else one per distinct length and
/// label layout.
pub(crate) struct PairPlans {
    pub unique: Vec<Plan>,
    pub of_pair: Vec<usize>,
}

fn plan_pairs(
    model: &Transformer,
    pairs: &[PreparedPair],
    labels: Option<&PositionLabels>,
    spec: &SweepSpec,
) -> Result<PairPlans, SweepError> {
    check_labeled(model, pairs, labels, spec)?;
    let positional = has_position_axis(&model.cfg, spec);
    let mut unique: Vec<Plan> = Vec::new();
    let mut keys: Vec<(usize, Vec<std::ops::Range<usize>>)> = Vec::new();
    let mut of_pair = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let spans = match labels {
            Some(l) if positional => l.spans[i].clone(),
            _ => vec![],
        };
        let key = (p.n_pos(), spans);
        let at = match keys.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                unique.push(match labels {
                    Some(_) if positional => plan_labeled(&model.cfg, key.0, spec, &key.1),
                    _ => plan(&model.cfg, key.0, spec),
                });
                keys.push(key);
                unique.len() - 1
            }
        };
        of_pair.push(at);
    }
    Ok(PairPlans { unique, of_pair })
}

/// Everything that must hold before any forward pass: a sensible spec, a
/// target the model has, prompt pairs of one length within the context.
/// Returns the prompt length (of the first pair, when a target without a
/// position axis lets lengths differ).
pub fn check_inputs(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
) -> Result<usize, SweepError> {
    check_labeled(model, pairs, None, spec)
}

fn check_labeled(
    model: &Transformer,
    pairs: &[PreparedPair],
    labels: Option<&PositionLabels>,
    spec: &SweepSpec,
) -> Result<usize, SweepError> {
    spec.validate()?;
    spec.check_model(&model.cfg)?;
    let Some(first) = pairs.first() else {
        return Err(PairError::NoPairs.into());
    };
    let n_pos = first.n_pos();
    let ragged = pairs.iter().any(|p| p.n_pos() != n_pos);
    let positional = has_position_axis(&model.cfg, spec);
    if let Some(l) = labels.filter(|_| positional) {
        if l.spans.len() != pairs.len() {
            return Err(SweepError::Invalid(format!(
                "{} pairs but position labels for {}",
                pairs.len(),
                l.spans.len()
            )));
        }
        for (i, (p, spans)) in pairs.iter().zip(&l.spans).enumerate() {
            if spans.len() != l.names.len()
                || spans.iter().any(|s| s.is_empty() || s.end > p.n_pos())
            {
                return Err(SweepError::Invalid(format!(
                    "pair {i}: its position labels do not fit its {} tokens",
                    p.n_pos()
                )));
            }
        }
    } else if ragged && positional {
        return Err(PairError::LengthsDiffer {
            groups: length_groups(pairs),
        }
        .into());
    }
    if ragged && spec.corruption.is_ablation() {
        return Err(SweepError::Invalid(format!(
            "{} ablation patches one source activation, position by position, into every \
             pair, so the pairs must share a token length ({})",
            spec.corruption.name(),
            describe_lengths(pairs)
        )));
    }
    let longest = pairs.iter().map(|p| p.n_pos()).max().unwrap_or(n_pos);
    if longest > model.cfg.n_ctx {
        return Err(SweepError::Invalid(format!(
            "prompts of {longest} tokens exceed the model's context of {}",
            model.cfg.n_ctx
        )));
    }
    Ok(n_pos)
}

fn describe_lengths(pairs: &[PreparedPair]) -> String {
    super::prepare::describe_groups(&length_groups(pairs))
}

/// Pair indices by token length, shortest first.
fn length_groups(pairs: &[PreparedPair]) -> Vec<(usize, Vec<usize>)> {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        by.entry(p.n_pos()).or_default().push(i);
    }
    by.into_iter().collect()
}

/// Every hook some cell patches: the unpatched runs capture these.
pub(crate) fn patched_hooks(plan: &Plan) -> HashSet<HookPoint> {
    plan.cells
        .iter()
        .flatten()
        .flatten()
        .map(|o| o.hook)
        .collect()
}

/// A sweep in progress: the plan, the unpatched runs, and the bookkeeping
/// progress reports need.
struct Sweep<'a> {
    model: &'a Transformer,
    plans: &'a PairPlans,
    runs: &'a [RunPair],
    means: Baselines,
    start: Instant,
    passes: usize,
    cancel: Option<&'a AtomicBool>,
    on_progress: &'a mut dyn FnMut(&Progress),
}

impl Sweep<'_> {
    /// The plan of run `ri`'s prompt pair.
    fn plan_of(&self, ri: usize) -> &Plan {
        &self.plans.unique[self.plans.of_pair[self.runs[ri].pair]]
    }

    fn check_cancel(&self) -> Result<(), SweepError> {
        match self.cancel.is_some_and(|f| f.load(Ordering::Relaxed)) {
            true => Err(SweepError::Cancelled),
            false => Ok(()),
        }
    }

    fn report(&mut self, done: usize, total: usize, finished: Vec<(usize, Metrics)>) {
        let elapsed = self.start.elapsed();
        (self.on_progress)(&Progress {
            done,
            total,
            elapsed,
            eta: eta(elapsed, done, total),
            forward_passes: self.passes,
            finished,
            baselines: self.means,
        });
    }

    /// First-order estimates: one backward pass per run.
    fn attribution(&mut self) -> Result<Vec<Vec<Metrics>>, SweepError> {
        let (n_runs, n_cells) = (self.runs.len(), self.plans.unique[0].n_cells());
        let mut values = Vec::with_capacity(n_runs);
        for (i, run) in self.runs.iter().enumerate() {
            self.check_cancel()?;
            values.push(super::attribution::estimate(
                self.model,
                self.plan_of(i),
                run,
            )?);
            self.passes += 1;
            self.report((i + 1) * n_cells, n_runs * n_cells, vec![]);
        }
        Ok(values)
    }

    /// Exact patching, unit by unit in canonical order (layer group by
    /// layer group); `values[run][cell]`, with cells outside `opts.cells`
    /// or in units `control` skips left NaN.
    fn exact(
        &mut self,
        opts: &EngineOptions,
        control: &mut dyn WorkControl,
    ) -> Result<Vec<Vec<Metrics>>, SweepError> {
        let nan = Metrics::nan();
        let n_cells = self.plans.unique[0].n_cells();
        let mut values = vec![vec![nan; n_cells]; self.runs.len()];
        let plan_of = |ri: usize| self.plan_of(ri);
        let units = plan_units(
            &self.model.cfg,
            &self.plans.unique[0],
            &plan_of,
            self.runs,
            opts,
        )?;
        let run_pairs: Vec<usize> = self.runs.iter().map(|r| r.pair).collect();
        let selection = control.select(&units, &run_pairs)?;
        if selection.len() != units.len() {
            return Err(SweepError::Invalid(format!(
                "the work control chose {} of {} units",
                selection.len(),
                units.len()
            )));
        }
        let total: usize = units
            .iter()
            .zip(&selection)
            .filter(|(_, s)| !matches!(s, Selection::Skip))
            .map(|(u, _)| u.rows.len())
            .sum();
        let mut done = 0;
        for (i, (unit, sel)) in units.iter().zip(&selection).enumerate() {
            let ms = match sel {
                Selection::Skip => vec![],
                Selection::Known(ms) if ms.len() == unit.rows.len() => ms.clone(),
                Selection::Known(_) => {
                    return Err(SweepError::Invalid(format!(
                        "unit {i}: known values do not match its {} cells",
                        unit.rows.len()
                    )))
                }
                Selection::Run => {
                    let ms = self.run_unit(unit, opts)?;
                    control.done(i, unit, &ms)?;
                    ms
                }
            };
            for (r, m) in unit.rows.iter().zip(ms) {
                values[r.run][r.cell] = m;
            }
            done += ms_len(sel, unit);
            let group_ends = units.get(i + 1).is_none_or(|n| n.layer != unit.layer);
            let finished = match group_ends {
                true => self.finished(&values, unit.layer, &units),
                false => vec![],
            };
            self.report(done, total, finished);
        }
        Ok(values)
    }

    /// Computes one unit: a batched forward (or, for the naive method, one
    /// full forward of its single cell), or the base metrics of free cells.
    fn run_unit(
        &mut self,
        unit: &WorkUnit,
        opts: &EngineOptions,
    ) -> Result<Vec<Metrics>, SweepError> {
        if !unit.forward {
            return Ok(unit
                .rows
                .iter()
                .map(|r| self.runs[r.run].base_metrics)
                .collect());
        }
        self.check_cancel()?;
        // A fast unit's rows may patch several runs of one length, each
        // with its own plan.
        let ms = match opts.method {
            Method::Fast => {
                let plan_of = |ri: usize| self.plan_of(ri);
                fast_rows(self.model, self.runs, &plan_of, &unit.rows, opts.packed)?
            }
            _ => {
                let row = unit.rows[0];
                let ops = self.plan_of(row.run).cells[row.cell]
                    .as_ref()
                    .expect("planned cells exist");
                vec![naive_cell(self.model, &self.runs[row.run], ops)?]
            }
        };
        self.passes += 1;
        Ok(ms)
    }

    /// The final values of the cells of the layer group `layer`: averaged
    /// over runs, normalised.
    fn finished(
        &self,
        values: &[Vec<Metrics>],
        layer: usize,
        units: &[WorkUnit],
    ) -> Vec<(usize, Metrics)> {
        let mut cells: Vec<usize> = units
            .iter()
            .filter(|u| u.layer == layer)
            .flat_map(|u| u.rows.iter().map(|r| r.cell))
            .collect();
        cells.sort_unstable();
        cells.dedup();
        cells
            .into_iter()
            .map(|c| {
                let mut m = Metrics::mean(&values.iter().map(|v| v[c]).collect::<Vec<_>>());
                m.normalize(&self.means.clean, &self.means.corrupted);
                (c, m)
            })
            .collect()
    }
}

/// Cells a unit contributes to progress: none when another process runs it.
fn ms_len(sel: &Selection, unit: &WorkUnit) -> usize {
    match sel {
        Selection::Skip => 0,
        _ => unit.rows.len(),
    }
}

/// Cells whose patch changes something, with their first changed position.
type Active = Vec<(usize, usize)>;

/// Splits `cells` into those whose patch changes something, with their
/// first changed position, and those that reproduce the base run.
pub(crate) fn split_unchanged(
    plan: &Plan,
    run: &RunPair,
    cells: &[usize],
    memo: &mut ChangeCache,
) -> Result<(Active, Vec<usize>), SweepError> {
    let (mut active, mut unchanged) = (Vec::new(), Vec::new());
    for &c in cells {
        let ops = plan.cells[c].as_ref().expect("grouped cells exist");
        match first_changed(run, ops, memo)? {
            Some(p0) => active.push((c, p0)),
            None => unchanged.push(c),
        }
    }
    Ok((active, unchanged))
}

/// The stored result of a finished sweep.
fn finish(
    sweep: Sweep<'_>,
    baselines: &[PairBaselines],
    values: Vec<Vec<Metrics>>,
    method: Method,
) -> SweepResult {
    let mut result = assemble(
        &sweep.plans.unique[0],
        sweep.runs,
        baselines,
        values,
        sweep.passes,
        sweep.start.elapsed(),
        sweep.model.device(),
    );
    if method == Method::Attribution {
        result.method = "attribution".into();
    }
    result
}

fn eta(elapsed: Duration, done: usize, total: usize) -> Option<Duration> {
    (done > 0 && done <= total).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// Existing cells (of `only`, if given) grouped by the block where their
/// earliest patch sits.
pub(crate) fn layer_groups(plan: &Plan, only: Option<&[usize]>) -> Vec<(usize, Vec<usize>)> {
    let mut by_layer: BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, c) in plan.cells.iter().enumerate() {
        if only.is_some_and(|o| !o.contains(&i)) {
            continue;
        }
        if let Some(ops) = c {
            let l = ops.iter().filter_map(|o| o.hook.layer()).min().unwrap_or(0);
            by_layer.entry(l).or_default().push(i);
        }
    }
    by_layer.into_iter().collect()
}
