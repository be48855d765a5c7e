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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{Result as CResult, Tensor};

use crate::model::forward::Packing;
use crate::model::{ForwardOptions, HookPoint, StartState, Transformer};

use super::masks::{batch_hooks, packed_hooks};
use super::metrics::{self, Metrics};
use super::plan::{plan, PatchOp, Plan};
use super::prepare::PreparedPair;
use super::result::{assemble, mean_baselines, Baselines, SweepResult};
use super::runs::{build_runs, RunPair};
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

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("sweep cancelled")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Spec(#[from] super::validate::SpecError),
    #[error("tensor operation failed during the sweep: {0}")]
    Candle(#[from] candle_core::Error),
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
    spec.validate()?;
    spec.check_model(&model.cfg)?;
    if pairs.is_empty() {
        return Err(SweepError::Invalid("no prompt pairs".into()));
    }
    let n_pos = pairs[0].n_pos();
    if pairs.iter().any(|p| p.n_pos() != n_pos) {
        return Err(SweepError::Invalid(
            "all prompt pairs must have the same token length".into(),
        ));
    }
    if n_pos > model.cfg.n_ctx {
        return Err(SweepError::Invalid(format!(
            "prompts of {n_pos} tokens exceed the model's context of {}",
            model.cfg.n_ctx
        )));
    }
    let plan = plan(&model.cfg, n_pos, spec);
    let hooks: HashSet<HookPoint> = plan
        .cells
        .iter()
        .flatten()
        .flatten()
        .map(|o| o.hook)
        .collect();
    let (runs, baselines, mut passes) =
        build_runs(model, pairs, spec, &hooks).map_err(SweepError::Invalid)?;
    let means = mean_baselines(&baselines);

    if opts.method == Method::Attribution {
        let mut values = Vec::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            if cancel.is_some_and(|f| f.load(Ordering::Relaxed)) {
                return Err(SweepError::Cancelled);
            }
            values.push(super::attribution::estimate(model, &plan, run)?);
            passes += 1;
            let elapsed = start.elapsed();
            on_progress(&Progress {
                done: (i + 1) * plan.n_cells(),
                total: runs.len() * plan.n_cells(),
                elapsed,
                eta: eta(elapsed, i + 1, runs.len()),
                forward_passes: passes,
                finished: vec![],
                baselines: means,
            });
        }
        let mut result = assemble(
            &plan,
            &runs,
            &baselines,
            values,
            passes,
            start.elapsed(),
            model.device(),
        );
        result.method = "attribution".into();
        return Ok(result);
    }

    // values[run][cell]; cells outside `opts.cells` stay NaN.
    let nan = Metrics::nan();
    let mut values: Vec<Vec<Metrics>> = vec![vec![nan; plan.n_cells()]; runs.len()];
    let groups = layer_groups(&plan, opts.cells.as_deref());
    let total = groups.iter().map(|(_, c)| c.len()).sum::<usize>() * runs.len();
    let mut done = 0;
    let mut changed: Vec<ChangeCache> = runs.iter().map(|_| ChangeCache::default()).collect();
    for (_layer, cells) in groups {
        for (ri, run) in runs.iter().enumerate() {
            let batches = match opts.method {
                Method::Naive => cells.iter().map(|&c| vec![(c, 0usize)]).collect(),
                Method::Fast | Method::Attribution => {
                    let mut active = Vec::new();
                    for &c in &cells {
                        let ops = plan.cells[c].as_ref().expect("grouped cells exist");
                        match first_changed(run, ops, &mut changed[ri])? {
                            Some(p0) => active.push((c, p0)),
                            None => {
                                values[ri][c] = run.base_metrics;
                                done += 1;
                            }
                        }
                    }
                    batch_cells(active, model, &plan, n_pos, opts)
                }
            };
            for batch in batches {
                if cancel.is_some_and(|f| f.load(Ordering::Relaxed)) {
                    return Err(SweepError::Cancelled);
                }
                let ms = match opts.method {
                    Method::Naive => vec![naive_cell(
                        model,
                        run,
                        plan.cells[batch[0].0].as_ref().unwrap(),
                    )?],
                    Method::Fast | Method::Attribution => {
                        fast_batch(model, run, &plan, &batch, opts.packed)?
                    }
                };
                passes += 1;
                for ((c, _), m) in batch.iter().zip(ms) {
                    values[ri][*c] = m;
                }
                done += batch.len();
                let elapsed = start.elapsed();
                on_progress(&Progress {
                    done,
                    total,
                    elapsed,
                    eta: eta(elapsed, done, total),
                    forward_passes: passes,
                    finished: vec![],
                    baselines: means,
                });
            }
        }
        let elapsed = start.elapsed();
        let finished = cells
            .iter()
            .map(|&c| {
                let mut m = Metrics::mean(&values.iter().map(|v| v[c]).collect::<Vec<_>>());
                m.normalize(&means.clean, &means.corrupted);
                (c, m)
            })
            .collect();
        on_progress(&Progress {
            done,
            total,
            elapsed,
            eta: eta(elapsed, done, total),
            forward_passes: passes,
            finished,
            baselines: means,
        });
    }
    Ok(assemble(
        &plan,
        &runs,
        &baselines,
        values,
        passes,
        start.elapsed(),
        model.device(),
    ))
}

fn eta(elapsed: Duration, done: usize, total: usize) -> Option<Duration> {
    (done > 0 && done <= total).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// Existing cells (of `only`, if given) grouped by the block where their
/// earliest patch sits.
fn layer_groups(plan: &Plan, only: Option<&[usize]>) -> Vec<(usize, Vec<usize>)> {
    let mut by_layer: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
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

/// Per-run memo of which positions differ between source and base at a
/// hook (for one head, or all).
#[derive(Default)]
struct ChangeCache(HashMap<(HookPoint, Option<usize>), Vec<bool>>);

/// The first position a cell's patch actually changes, or `None` if the
/// patch writes the values the base run already has.
fn first_changed(run: &RunPair, ops: &[PatchOp], memo: &mut ChangeCache) -> CResult<Option<usize>> {
    let mut first: Option<usize> = None;
    for op in ops {
        let key = (op.hook, op.head);
        let changed = match memo.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(changed_positions(run, op.hook, op.head)?)
            }
        };
        let p = match op.pos {
            Some(p) => changed[p].then_some(p),
            None => changed.iter().position(|&c| c),
        };
        if let Some(p) = p {
            first = Some(first.map_or(p, |f: usize| f.min(p)));
        }
    }
    Ok(first)
}

/// For each position: does the source differ from the base at `hook` (head)?
fn changed_positions(run: &RunPair, hook: HookPoint, head: Option<usize>) -> CResult<Vec<bool>> {
    let base = run
        .base
        .get(hook)
        .expect("base run captured every patched hook");
    let src = &run.source[&hook];
    let mut diff = (src - base)?.abs()?.squeeze(0)?; // remove batch
                                                     // Bring to [pos, ...] with heads selectable.
    let is_pattern = matches!(hook, HookPoint::Pattern(_) | HookPoint::AttnScores(_));
    if is_pattern {
        // [head, q, k] -> [q, head, k]
        diff = diff.transpose(0, 1)?;
    }
    if let Some(h) = head {
        diff = diff.narrow(1, h, 1)?;
    }
    let n_pos = diff.dim(0)?;
    let per_pos = diff
        .reshape((n_pos, ()))?
        .max(1)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    Ok(per_pos.iter().map(|&d| d > 0.0).collect())
}

/// Rough bytes one batch row needs when recomputing `t_local` positions.
fn row_bytes(model: &Transformer, t_local: usize, n_pos: usize) -> usize {
    let c = &model.cfg;
    let per_pos = 12 * c.d_model + 4 * c.d_mlp + 4 * c.n_heads * n_pos + 6 * c.n_heads * c.d_head;
    let kv = 4 * c.n_kv_heads * n_pos * c.d_head;
    4 * (t_local * per_pos + kv + 4 * c.d_vocab)
}

/// Chunks active `(cell, first_changed_pos)` pairs into batches bounded by
/// memory and token budgets. Packed batches cost the sum of their rows'
/// lengths; dense ones (pattern patches) cost rows × the longest row, so
/// cells with similar start positions go together.
fn batch_cells(
    mut active: Vec<(usize, usize)>,
    model: &Transformer,
    plan: &Plan,
    n_pos: usize,
    opts: &EngineOptions,
) -> Vec<Vec<(usize, usize)>> {
    active.sort_by_key(|&(c, p0)| (std::cmp::Reverse(p0), c));
    let mut out: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut cur_tokens = 0;
    for item in active {
        let packed =
            opts.packed && is_packable(&[plan.cells[item.0].as_ref().expect("active cells exist")]);
        let tokens = if packed {
            cur_tokens + n_pos - item.1
        } else {
            (cur.len() + 1) * (n_pos - item.1.min(cur.last().map_or(usize::MAX, |l| l.1)))
        };
        let per_token = row_bytes(model, 1, n_pos);
        let fits = tokens <= opts.max_batch_tokens && tokens * per_token <= opts.max_batch_mem;
        if !cur.is_empty() && !fits {
            out.push(std::mem::take(&mut cur));
            cur_tokens = 0;
        }
        cur_tokens += n_pos - item.1;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The reference: one full forward of the base run with the cell patched.
fn naive_cell(model: &Transformer, run: &RunPair, ops: &[PatchOp]) -> CResult<Metrics> {
    let n_pos = run.base_tokens.len();
    let mut spec = batch_hooks(model, run, &[&ops.to_vec()], n_pos)?;
    if let Some(e) = &run.base_embed_edit {
        spec = spec.intervene(HookPoint::Embed, e.clone());
    }
    let tokens = Tensor::new(run.base_tokens.as_slice(), model.device())?.unsqueeze(0)?;
    let out = model.forward(Some(&tokens), &spec, &ForwardOptions::default())?;
    let logits = out.logits.expect("full forward has logits");
    let last = logits.narrow(1, n_pos - 1, 1)?.squeeze(1)?;
    Ok(metrics::compute(&last, &run.clean_logprobs, run.answer, run.wrong)?[0])
}

/// One batched, resumed forward for cells sharing a start layer.
///
/// Rows are packed (each recomputes only its own positions) unless a cell
/// patches attention patterns, whose `[head, query, key]` layout has no
/// packed form; those use a dense block from the batch's first position.
fn fast_batch(
    model: &Transformer,
    run: &RunPair,
    plan: &Plan,
    batch: &[(usize, usize)],
    packed: bool,
) -> CResult<Vec<Metrics>> {
    let n_pos = run.base_tokens.len();
    let cells: Vec<&Vec<PatchOp>> = batch
        .iter()
        .map(|(c, _)| plan.cells[*c].as_ref().unwrap())
        .collect();
    let layer = cells
        .iter()
        .flat_map(|ops| ops.iter().filter_map(|o| o.hook.layer()))
        .min()
        .unwrap_or(0);
    let base_resid = run
        .base
        .get(HookPoint::ResidPre(layer))
        .expect("resid_pre cached for every layer");
    let logits = if packed && is_packable(&cells) && packing_pays(batch, n_pos) {
        let packing = Packing::new(batch.iter().map(|b| b.1).collect(), n_pos);
        let tokens = packing.tokens();
        let pos_idx = Tensor::new(
            tokens.iter().map(|&(_, p)| p as u32).collect::<Vec<_>>(),
            model.device(),
        )?;
        let spec = packed_hooks(model, run, &cells, &tokens, &pos_idx)?;
        let resid = base_resid
            .squeeze(0)?
            .contiguous()?
            .index_select(&pos_idx, 0)?
            .unsqueeze(0)?;
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid,
                pos_offset: 0,
                past: Some(&run.base_kv),
                batch: batch.len(),
                packing: Some(&packing),
            }),
            last_pos_only: true,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    } else {
        let p0 = batch.iter().map(|b| b.1).min().unwrap_or(0);
        let spec = batch_hooks(model, run, &cells, n_pos)?;
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid: base_resid.narrow(1, p0, n_pos - p0)?,
                pos_offset: p0,
                past: Some(&run.base_kv),
                batch: batch.len(),
                packing: None,
            }),
            last_pos_only: true,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    };
    metrics::compute(
        &logits.expect("logits"),
        &run.clean_logprobs,
        run.answer,
        run.wrong,
    )
}

/// Packing saves the padding of a dense block but makes attention
/// quadratic in the packed length (every token is masked against every
/// other row's), so it is used only when the dense block would waste more
/// than a fifth of its positions — e.g. `resid_pre` cells of many start
/// positions, but not `head_out` cells that all start at one position.
fn packing_pays(batch: &[(usize, usize)], n_pos: usize) -> bool {
    let p0 = batch.iter().map(|b| b.1).min().unwrap_or(0);
    let dense = batch.len() * (n_pos - p0);
    let packed: usize = batch.iter().map(|b| n_pos - b.1).sum();
    dense * 5 > packed * 6
}

/// Whether every patched hook of these cells has a per-token layout.
fn is_packable(cells: &[&Vec<PatchOp>]) -> bool {
    cells
        .iter()
        .flat_map(|ops| ops.iter())
        .all(|o| !matches!(o.hook, HookPoint::Pattern(_) | HookPoint::AttnScores(_)))
}
