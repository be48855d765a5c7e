//! What a sweep will cost before it runs.
//!
//! The estimate counts the work the fast engine does: a cell whose earliest
//! patch is at block `l` and position `p0` recomputes `(n_layers − l)` blocks
//! at `n_pos − p0` positions; cells that change nothing cost nothing. The
//! work, in rows of a full forward, times the measured per-row cost of a
//! batched forward at this prompt length gives the time ([`estimate`]: no
//! forward beyond two timing runs, but blind to batch shapes).
//!
//! [`measure`] is the calibrated estimate shown before a sweep: it plans
//! the batches with the engine's own change detection and batching and
//! times a few of them, so packed versus dense attention, per-batch
//! overhead and the start layers of windowed ROME traces are all priced as
//! they will run. (Counting rows of a batch-16 full forward made a ROME
//! trace on SmolLM2 look half as long as it took.)

use std::time::Instant;

use candle_core::Tensor;

use crate::model::{ForwardOptions, HookSpec, ModelConfig, Transformer};
use crate::patching::batches::{batch_cells, batch_rows, ChangeCache, Row};
use crate::patching::engine::{check_inputs, layer_groups, patched_hooks, split_unchanged};
use crate::patching::execute::{fast_batch, naive_cell};
use crate::patching::plan::{plan, Plan};
use crate::patching::runs::{base_passes, build_runs, RunPair};
use crate::patching::{Corruption, EngineOptions, Method, PreparedPair, SweepError, SweepSpec};

/// Measured forward cost at one prompt length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForwardTiming {
    pub n_pos: usize,
    /// One full forward of one prompt.
    pub single_ms: f64,
    /// Per row of a batched forward (batch 16).
    pub row_ms: f64,
}

/// The cost of a sweep before running it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub cells: usize,
    /// Patched-run evaluations: cells × prompt pairs × noise samples.
    pub evaluations: usize,
    /// What the naive method would run: one forward per evaluation.
    pub naive_passes: usize,
    /// Batched forward passes the fast engine is expected to run.
    pub passes: usize,
    pub seconds: f64,
}

/// Times a full forward of `tokens`, alone and as a batch of 16.
pub fn measure_forward(model: &Transformer, tokens: &[u32]) -> candle_core::Result<ForwardTiming> {
    let t = Tensor::new(tokens, model.device())?.unsqueeze(0)?;
    let opts = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let spec = HookSpec::new();
    model.forward(Some(&t), &spec, &opts)?; // warm-up
    let start = Instant::now();
    model.forward(Some(&t), &spec, &opts)?;
    let single_ms = start.elapsed().as_secs_f64() * 1e3;
    let batch = t.repeat((16, 1))?;
    let start = Instant::now();
    model.forward(Some(&batch), &spec, &opts)?;
    let row_ms = start.elapsed().as_secs_f64() * 1e3 / 16.0;
    Ok(ForwardTiming {
        n_pos: tokens.len(),
        single_ms,
        row_ms,
    })
}

/// The first position whose source activation differs from the base run's.
fn first_source_change(pairs: &[PreparedPair], corruption: &Corruption) -> usize {
    let differing = pairs
        .iter()
        .filter_map(|p| p.differing_positions().first().copied())
        .min()
        .unwrap_or(0);
    match corruption {
        Corruption::Prompt => differing,
        Corruption::Gaussian { positions, .. } => {
            positions.iter().copied().min().unwrap_or(differing)
        }
        // Zeros and means differ from the activations everywhere.
        Corruption::Zero { .. } | Corruption::Mean { .. } => 0,
    }
}

/// Estimates the cost of `spec` over `pairs`.
pub fn estimate(
    cfg: &ModelConfig,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
    timing: &ForwardTiming,
    opts: &EngineOptions,
) -> Estimate {
    let n_pos = pairs.first().map_or(1, |p| p.n_pos()).max(1);
    let p = plan(cfg, n_pos, spec);
    let samples = match spec.corruption {
        Corruption::Gaussian { samples, .. } => samples.max(1),
        _ => 1,
    };
    let runs = pairs.len().max(1) * samples;
    let first = first_source_change(pairs, &spec.corruption);
    let nl = cfg.n_layers.max(1);
    // Per start layer: recomputed positions summed over cells.
    let mut tokens_by_layer = vec![0usize; nl];
    let mut rows = 0.0f64;
    let mut cells = 0;
    for ops in p.cells.iter().flatten() {
        cells += 1;
        let l0 = ops
            .iter()
            .filter_map(|o| o.hook.layer())
            .min()
            .unwrap_or(0)
            .min(nl - 1);
        let p0 = ops
            .iter()
            .map(|o| o.pos.unwrap_or(first))
            .min()
            .unwrap_or(first);
        if p0 < first {
            continue; // patches before the first change write what is already there
        }
        let t = n_pos - p0.min(n_pos - 1);
        tokens_by_layer[l0] += t;
        rows += (nl - l0) as f64 / nl as f64 * t as f64 / n_pos as f64;
    }
    let budget = opts.max_batch_tokens.max(1);
    let batches: usize = tokens_by_layer.iter().map(|t| t.div_ceil(budget)).sum();
    // Unpatched prompts: the clean one and a corrupted one per run.
    let base_prompts = pairs.len().max(1) * (1 + samples);
    let base_passes = base_passes(pairs, &spec.corruption);
    Estimate {
        cells,
        evaluations: cells * runs,
        naive_passes: cells * runs + base_passes,
        passes: batches * runs + base_passes,
        seconds: (rows * runs as f64 * timing.row_ms + base_prompts as f64 * timing.single_ms)
            / 1e3,
    }
}

/// How many of a sweep's planned batches [`measure`] times.
const TIMED_BATCHES: usize = 6;

/// Estimates the cost of `spec` over `pairs` from what the engine actually
/// runs: the unpatched runs of the first pair (timed), the engine's own
/// change detection and batching of its cells (so the batch shapes are the
/// ones the sweep will run), and a forward of a few of those batches, spread
/// from the cheapest to the most expensive. The timed batches fit
/// `time = a + b × (blocks × recomputed tokens)`, which prices the rest;
/// the other pairs and noise samples repeat the first one's work.
///
/// Costs about two unpatched forwards and [`TIMED_BATCHES`] batches — a
/// small fraction of any sweep worth estimating.
pub fn measure(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
    opts: &EngineOptions,
) -> Result<Estimate, SweepError> {
    let n_pos = check_inputs(model, pairs, spec)?;
    let p = plan(&model.cfg, n_pos, spec);
    let samples = match spec.corruption {
        Corruption::Gaussian { samples, .. } => samples.max(1),
        _ => 1,
    };
    let mut one = spec.clone();
    if let Corruption::Gaussian { samples, .. } = &mut one.corruption {
        *samples = 1;
    }
    let start = Instant::now();
    let (runs, _, _) = build_runs(model, &pairs[..1], &one, &patched_hooks(&p))?;
    // The first pair's unpatched prompts: its clean one and one more.
    let per_base = start.elapsed().as_secs_f64() / 2.0;
    let run = &runs[0];

    let start = Instant::now();
    let batches = planned_batches(model, &p, run, opts)?;
    let detect = start.elapsed().as_secs_f64();
    let timed = time_batches(model, &p, run, &batches, opts)?;
    let per_run = detect + fit_total(&timed, &batches, &model.cfg, n_pos);

    let n_runs = pairs.len() * samples;
    let base_prompts = pairs.len() * (1 + samples);
    let base_forwards = base_passes(pairs, &spec.corruption);
    let cells = p.cells.iter().flatten().count();
    // Runs share batches: price the batches the engine forms from every
    // run's rows (each run taken to repeat the first one's).
    let (passes, seconds) = if opts.method == Method::Fast && n_runs > 1 {
        let shared = shared_batches(model, &p, run, opts, n_runs)?;
        let total = detect * n_runs as f64 + fit_total(&timed, &shared, &model.cfg, n_pos);
        (shared.len(), total)
    } else {
        (batches.len() * n_runs, n_runs as f64 * per_run)
    };
    Ok(Estimate {
        cells,
        evaluations: cells * n_runs,
        naive_passes: cells * n_runs + base_forwards,
        passes: passes + base_forwards,
        seconds: base_prompts as f64 * per_base + seconds,
    })
}

/// The batches of `n_runs` copies of `run`'s active rows, as the engine
/// batches rows of many runs together.
fn shared_batches(
    model: &Transformer,
    p: &Plan,
    run: &RunPair,
    opts: &EngineOptions,
    n_runs: usize,
) -> Result<Vec<PlannedBatch>, SweepError> {
    let n_pos = run.base_tokens.len();
    let mut memo = ChangeCache::default();
    let mut out = Vec::new();
    for (layer, cells) in layer_groups(p, opts.cells.as_deref()) {
        let (active, _) = split_unchanged(p, run, &cells, &mut memo)?;
        let rows: Vec<Row> = (0..n_runs)
            .flat_map(|r| {
                active
                    .iter()
                    .map(move |&(cell, p0)| Row { run: r, cell, p0 })
            })
            .collect();
        let ops = |r: &Row| p.cells[r.cell].as_ref();
        for b in batch_rows(rows, &ops, &model.cfg, n_pos, opts) {
            out.push(PlannedBatch {
                layer,
                rows: b.into_iter().map(|r| (r.cell, r.p0)).collect(),
            });
        }
    }
    Ok(out)
}

/// One planned batch: its start block and `(cell, first changed position)` rows.
struct PlannedBatch {
    layer: usize,
    rows: Vec<(usize, usize)>,
}

/// The batches the engine runs for `run`, by the engine's own functions.
fn planned_batches(
    model: &Transformer,
    p: &Plan,
    run: &RunPair,
    opts: &EngineOptions,
) -> Result<Vec<PlannedBatch>, SweepError> {
    let n_pos = run.base_tokens.len();
    let mut memo = ChangeCache::default();
    let mut out = Vec::new();
    for (layer, cells) in layer_groups(p, opts.cells.as_deref()) {
        let batches = match opts.method {
            Method::Fast => {
                let (active, _) = split_unchanged(p, run, &cells, &mut memo)?;
                batch_cells(active, &model.cfg, p, n_pos, opts)
            }
            Method::Naive | Method::Attribution => cells.iter().map(|&c| vec![(c, 0)]).collect(),
        };
        out.extend(batches.into_iter().map(|rows| PlannedBatch { layer, rows }));
    }
    Ok(out)
}

/// Work of a batch: blocks run × positions recomputed over its rows.
fn work(b: &PlannedBatch, cfg: &ModelConfig, n_pos: usize) -> f64 {
    let tokens: usize = b.rows.iter().map(|r| n_pos - r.1.min(n_pos)).sum();
    ((cfg.n_layers - b.layer.min(cfg.n_layers)) * tokens.max(1)) as f64
}

/// Times up to [`TIMED_BATCHES`] batches spread over the range of work, as
/// `(work, seconds)`, after one untimed warm-up.
fn time_batches(
    model: &Transformer,
    p: &Plan,
    run: &RunPair,
    batches: &[PlannedBatch],
    opts: &EngineOptions,
) -> Result<Vec<(f64, f64)>, SweepError> {
    let n_pos = run.base_tokens.len();
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by(|&a, &b| {
        work(&batches[a], &model.cfg, n_pos).total_cmp(&work(&batches[b], &model.cfg, n_pos))
    });
    let k = TIMED_BATCHES.min(order.len());
    let picks: Vec<usize> = (0..k)
        .map(|i| {
            order[if k == 1 {
                0
            } else {
                i * (order.len() - 1) / (k - 1)
            }]
        })
        .collect();
    let exec = |b: &PlannedBatch| -> Result<(), SweepError> {
        match opts.method {
            Method::Fast => {
                fast_batch(model, run, p, &b.rows, opts.packed)?;
            }
            Method::Naive => {
                naive_cell(model, run, p.cells[b.rows[0].0].as_ref().expect("planned"))?;
            }
            Method::Attribution => {}
        }
        Ok(())
    };
    if let Some(&first) = picks.first() {
        exec(&batches[first])?;
    }
    picks
        .iter()
        .map(|&i| {
            let start = Instant::now();
            exec(&batches[i])?;
            Ok((
                work(&batches[i], &model.cfg, n_pos),
                start.elapsed().as_secs_f64(),
            ))
        })
        .collect()
}

/// Seconds for all `batches` from the timed ones: a least-squares line
/// `a + b × work` (both kept non-negative), or the mean time per unit of
/// work when the timed batches all do the same work.
fn fit_total(timed: &[(f64, f64)], batches: &[PlannedBatch], cfg: &ModelConfig, n: usize) -> f64 {
    if timed.is_empty() {
        return 0.0;
    }
    let k = timed.len() as f64;
    let (mx, my) = (
        timed.iter().map(|t| t.0).sum::<f64>() / k,
        timed.iter().map(|t| t.1).sum::<f64>() / k,
    );
    let sxx: f64 = timed.iter().map(|t| (t.0 - mx).powi(2)).sum();
    let sxy: f64 = timed.iter().map(|t| (t.0 - mx) * (t.1 - my)).sum();
    let (a, b) = if sxx > 0.0 {
        let b = (sxy / sxx).max(0.0);
        let a = (my - b * mx).max(0.0);
        (a, b)
    } else {
        (0.0, my / mx.max(1.0))
    };
    batches.iter().map(|bt| a + b * work(bt, cfg, n)).sum()
}
