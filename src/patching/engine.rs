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
//!   differing token) reproduces the base run, so no forward is needed.
//!
//! Cells sharing a start layer are batched along the batch dimension, each
//! row carrying its own mask; only the last position is unembedded. Work is
//! ordered layer group by layer group, so finished cells can be reported
//! (and drawn) while the rest runs, and the cancel flag is checked between
//! batches.
//!
//! `run_sweep` reads as its steps: check the inputs, plan the cells, run
//! the unpatched runs, evaluate the cells (exactly, or by attribution),
//! assemble the result. Batching lives in `batches.rs`, the forwards of a
//! batch in `execute.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{HookPoint, Transformer};

use super::batches::{batch_cells, first_changed, ChangeCache};
use super::error::SweepError;
use super::execute::{fast_batch, naive_cell};
use super::metrics::Metrics;
use super::plan::{plan, Plan};
use super::prepare::{PairError, PreparedPair};
use super::result::{assemble, mean_baselines, Baselines, SweepResult};
use super::runs::{build_runs, PairBaselines, RunPair};
use super::spec::SweepSpec;

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
    let start = Instant::now();
    if opts.method == Method::Attribution {
        model.require_float_weights("attribution patching")?;
    }
    let n_pos = check_inputs(model, pairs, spec)?;
    let plan = plan(&model.cfg, n_pos, spec);
    let (runs, baselines, passes) = build_runs(model, pairs, spec, &patched_hooks(&plan))?;
    let mut sweep = Sweep {
        model,
        plan: &plan,
        runs: &runs,
        means: mean_baselines(&baselines),
        start,
        passes,
        cancel,
        on_progress,
    };
    let values = match opts.method {
        Method::Attribution => sweep.attribution()?,
        Method::Fast | Method::Naive => sweep.exact(opts)?,
    };
    Ok(finish(sweep, &baselines, values, opts.method))
}

/// Everything that must hold before any forward pass: a sensible spec, a
/// target the model has, prompt pairs of one length within the context.
/// Returns the prompt length.
pub fn check_inputs(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
) -> Result<usize, SweepError> {
    spec.validate()?;
    spec.check_model(&model.cfg)?;
    let Some(first) = pairs.first() else {
        return Err(PairError::NoPairs.into());
    };
    let n_pos = first.n_pos();
    if let Some((index, p)) = pairs.iter().enumerate().find(|(_, p)| p.n_pos() != n_pos) {
        return Err(PairError::PairsDiffer {
            first: n_pos,
            index,
            other: p.n_pos(),
        }
        .into());
    }
    if n_pos > model.cfg.n_ctx {
        return Err(SweepError::Invalid(format!(
            "prompts of {n_pos} tokens exceed the model's context of {}",
            model.cfg.n_ctx
        )));
    }
    Ok(n_pos)
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
    plan: &'a Plan,
    runs: &'a [RunPair],
    means: Baselines,
    start: Instant,
    passes: usize,
    cancel: Option<&'a AtomicBool>,
    on_progress: &'a mut dyn FnMut(&Progress),
}

impl Sweep<'_> {
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
        let (n_runs, n_cells) = (self.runs.len(), self.plan.n_cells());
        let mut values = Vec::with_capacity(n_runs);
        for (i, run) in self.runs.iter().enumerate() {
            self.check_cancel()?;
            values.push(super::attribution::estimate(self.model, self.plan, run)?);
            self.passes += 1;
            self.report((i + 1) * n_cells, n_runs * n_cells, vec![]);
        }
        Ok(values)
    }

    /// Exact patching, layer group by layer group; `values[run][cell]`,
    /// with cells outside `opts.cells` left NaN.
    fn exact(&mut self, opts: &EngineOptions) -> Result<Vec<Vec<Metrics>>, SweepError> {
        let nan = Metrics::nan();
        let mut values = vec![vec![nan; self.plan.n_cells()]; self.runs.len()];
        let groups = layer_groups(self.plan, opts.cells.as_deref());
        let total = groups.iter().map(|(_, c)| c.len()).sum::<usize>() * self.runs.len();
        let mut done = 0;
        let mut changed: Vec<ChangeCache> = self.runs.iter().map(|_| Default::default()).collect();
        for (_layer, cells) in groups {
            for (ri, run) in self.runs.iter().enumerate() {
                let batches = match opts.method {
                    Method::Fast => {
                        let (active, unchanged) =
                            split_unchanged(self.plan, run, &cells, &mut changed[ri])?;
                        for c in unchanged {
                            values[ri][c] = run.base_metrics;
                            done += 1;
                        }
                        let n_pos = run.base_tokens.len();
                        batch_cells(active, &self.model.cfg, self.plan, n_pos, opts)
                    }
                    _ => cells.iter().map(|&c| vec![(c, 0usize)]).collect(),
                };
                for batch in batches {
                    self.check_cancel()?;
                    let ms = match opts.method {
                        Method::Fast => {
                            fast_batch(self.model, run, self.plan, &batch, opts.packed)?
                        }
                        _ => {
                            let ops = self.plan.cells[batch[0].0]
                                .as_ref()
                                .expect("grouped cells exist");
                            vec![naive_cell(self.model, run, ops)?]
                        }
                    };
                    self.passes += 1;
                    for ((c, _), m) in batch.iter().zip(ms) {
                        values[ri][*c] = m;
                    }
                    done += batch.len();
                    self.report(done, total, vec![]);
                }
            }
            let finished = self.finished(&values, &cells);
            self.report(done, total, finished);
        }
        Ok(values)
    }

    /// The final values of `cells`: averaged over runs, normalised.
    fn finished(&self, values: &[Vec<Metrics>], cells: &[usize]) -> Vec<(usize, Metrics)> {
        cells
            .iter()
            .map(|&c| {
                let mut m = Metrics::mean(&values.iter().map(|v| v[c]).collect::<Vec<_>>());
                m.normalize(&self.means.clean, &self.means.corrupted);
                (c, m)
            })
            .collect()
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
        sweep.plan,
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
