//! What a sweep will cost before it runs.
//!
//! The estimate counts the work the fast engine does: a cell whose earliest
//! patch is at block `l` and position `p0` recomputes `(n_layers − l)` blocks
//! at `n_pos − p0` positions; cells that change nothing cost nothing. The
//! work, in rows of a full forward, times the measured per-row cost of a
//! batched forward at this prompt length gives the time.

use std::time::Instant;

use candle_core::Tensor;

use crate::model::{ForwardOptions, HookSpec, ModelConfig, Transformer};
use crate::patching::plan::plan;
use crate::patching::{Corruption, EngineOptions, PreparedPair, SweepSpec};

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
    let base_runs = 2 * runs;
    Estimate {
        cells,
        evaluations: cells * runs,
        naive_passes: cells * runs + base_runs,
        passes: batches * runs + base_runs,
        seconds: (rows * runs as f64 * timing.row_ms + base_runs as f64 * timing.single_ms) / 1e3,
    }
}
