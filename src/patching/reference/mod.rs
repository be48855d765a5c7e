//! An independent reference for sweeps: slow by design, simple enough to be
//! checked by reading.
//!
//! The engine's naive path shares the planner (`plan.rs`), the mask builder
//! (`masks.rs`) and the base/source runs (`runs.rs`) with its fast path, so
//! `fast == naive` cannot catch a bug in those. This module shares none of
//! them: the cells are written out again from TransformerLens `patching.py`
//! and ROME (`cells`), the clean, corrupted and noised caches come from plain
//! full forwards capturing every hook (`runs`), and each cell of each run is
//! one plain full forward whose only interventions are [`Edit::Replace`]s
//! with a mask built element by element over the activation's full shape and
//! the source activation as value. Averaging over noise samples and pairs and
//! normalising are done here too. Only the model's
//! forward pass and the metric definitions (`metrics.rs`) are shared.
//!
//! Tests check the fast path against this on every target, direction and
//! corruption (tests/reference_equivalence.rs).

pub mod cells;
mod runs;

use std::collections::HashMap;

use candle_core::Tensor;

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};

use super::metrics::{self, Metrics};
use super::prepare::PreparedPair;
use super::spec::{Corruption, SweepSpec};
use cells::{site_mask, Cells, Dims, Site};
use runs::{last_logits, pair_runs, tokens_tensor, PairRuns, PatchedRun, Source};

/// Why the reference cannot run a spec.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("no prompt pairs given")]
    NoPairs,
    #[error("all prompt pairs must have the same token length (pair 0 has {first}, pair {index} has {other})")]
    PairsDiffer {
        first: usize,
        index: usize,
        other: usize,
    },
    #[error("prompts of {n_pos} tokens exceed the model's context of {n_ctx}")]
    TooLong { n_pos: usize, n_ctx: usize },
    #[error("the {family} model has no {hook} activation, which target {target} patches")]
    MissingHook {
        family: String,
        hook: String,
        target: String,
    },
    #[error(
        "{0} ablation replaces activations of the clean run, so it only runs with direction noise"
    )]
    AblationDenoises(&'static str),
    #[error("the corruption needs positions to corrupt, and the prompts do not differ anywhere")]
    NoPositions,
    #[error("corrupted position {pos} is outside the prompt of {n_pos} tokens")]
    PositionOutside { pos: usize, n_pos: usize },
    #[error("gaussian noise needs at least one sample")]
    ZeroSamples,
    #[error("a ROME window of 0 layers restores nothing; use 1 or more")]
    ZeroWindow,
    #[error("tensor operation failed in the reference sweep: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The reference's result: every metric of every cell, mean over pairs (and
/// noise samples), with normalised metrics normalised by the mean baselines.
#[derive(Debug, Clone)]
pub struct ReferenceResult {
    pub axes: Vec<String>,
    pub shape: Vec<usize>,
    pub components: Vec<String>,
    /// Row-major; `None` where a cell does not exist.
    pub cells: Vec<Option<Metrics>>,
    /// The same per pair, normalised by that pair's baselines.
    pub per_pair: Vec<Vec<Option<Metrics>>>,
    /// Mean baselines (their normalised metrics are 1 and 0).
    pub clean: Metrics,
    pub corrupted: Metrics,
    pub forward_passes: usize,
}

/// Runs `spec` over `pairs` the slow, obvious way.
pub fn reference_sweep(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
) -> Result<ReferenceResult, ReferenceError> {
    let n_pos = check_pairs(model, pairs)?;
    if let Corruption::Gaussian { samples: 0, .. } = spec.corruption {
        return Err(ReferenceError::ZeroSamples);
    }
    if spec.window == 0 {
        return Err(ReferenceError::ZeroWindow);
    }
    let cfg = &model.cfg;
    let dims = Dims {
        n_layers: cfg.n_layers,
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        n_pos,
    };
    let Cells {
        axes,
        shape,
        components,
        cells,
    } = cells::cells(spec.target, dims, spec.window);
    let mut passes = 0;
    let pair_runs = pair_runs(model, pairs, spec, &mut passes)?;

    // A hook the plain forward never visited does not exist in this model.
    let mut hooks: Vec<HookPoint> = cells.iter().flatten().flatten().map(|s| s.hook).collect();
    hooks.sort();
    hooks.dedup();
    if let Some(&missing) = hooks
        .iter()
        .find(|&&h| pair_runs[0].clean_cache.get(h).is_none())
    {
        return Err(ReferenceError::MissingHook {
            family: cfg.family.clone(),
            hook: missing.to_string(),
            target: spec.target.to_string(),
        });
    }
    let ablation = match spec.corruption {
        Corruption::Zero { .. } => runs::ablation_values(&pair_runs, &hooks, false)?,
        Corruption::Mean { .. } => runs::ablation_values(&pair_runs, &hooks, true)?,
        _ => HashMap::new(),
    };

    let mut per_pair: Vec<Vec<Option<Metrics>>> = Vec::new();
    for pr in &pair_runs {
        let mut row = Vec::with_capacity(cells.len());
        for cell in &cells {
            let Some(sites) = cell else {
                row.push(None);
                continue;
            };
            let mut samples = Vec::with_capacity(pr.runs.len());
            for run in &pr.runs {
                samples.push(patched(model, pr, run, sites, &ablation)?);
                passes += 1;
            }
            let mut m = Metrics::mean(&samples);
            m.normalize(&pr.clean, &pr.corrupted);
            row.push(Some(m));
        }
        per_pair.push(row);
    }

    let (mut clean, mut corrupted) = (
        mean_of(&pair_runs, |p| p.clean),
        mean_of(&pair_runs, |p| p.corrupted),
    );
    let (cl, co) = (clean, corrupted);
    clean.normalize(&cl, &co);
    corrupted.normalize(&cl, &co);
    let mean_cells = (0..cells.len())
        .map(|c| {
            let vals: Option<Vec<Metrics>> = per_pair.iter().map(|row| row[c]).collect();
            vals.map(|v| {
                let mut m = Metrics::mean(&v);
                m.normalize(&cl, &co);
                m
            })
        })
        .collect();
    Ok(ReferenceResult {
        axes: axes.iter().map(|s| s.to_string()).collect(),
        shape,
        components: components.iter().map(|s| s.to_string()).collect(),
        cells: mean_cells,
        per_pair,
        clean,
        corrupted,
        forward_passes: passes,
    })
}

fn mean_of(pairs: &[PairRuns], f: impl Fn(&PairRuns) -> Metrics) -> Metrics {
    Metrics::mean(&pairs.iter().map(f).collect::<Vec<_>>())
}

/// Validates the pairs; returns their common token length.
fn check_pairs(model: &Transformer, pairs: &[PreparedPair]) -> Result<usize, ReferenceError> {
    let first = pairs.first().ok_or(ReferenceError::NoPairs)?.n_pos();
    if let Some((index, p)) = pairs.iter().enumerate().find(|(_, p)| p.n_pos() != first) {
        return Err(ReferenceError::PairsDiffer {
            first,
            index,
            other: p.n_pos(),
        });
    }
    if first > model.cfg.n_ctx {
        return Err(ReferenceError::TooLong {
            n_pos: first,
            n_ctx: model.cfg.n_ctx,
        });
    }
    Ok(first)
}

/// One plain full forward of `run` with every site of the cell replaced.
fn patched(
    model: &Transformer,
    pr: &PairRuns,
    run: &PatchedRun,
    sites: &[Site],
    ablation: &HashMap<HookPoint, Tensor>,
) -> Result<Metrics, ReferenceError> {
    let mut spec = HookSpec::new();
    if let Some(e) = &run.embed {
        spec = spec.intervene(HookPoint::Embed, e.clone());
    }
    for s in sites {
        let value = match &run.source {
            Source::Run(cache) => cache.get(s.hook),
            Source::Ablation => ablation.get(&s.hook),
        }
        .ok_or_else(|| ReferenceError::MissingHook {
            family: model.cfg.family.clone(),
            hook: s.hook.to_string(),
            target: "this".into(),
        })?;
        let mask = site_mask(s, value.dims(), model.device())?;
        spec = spec.intervene(
            s.hook,
            Edit::Replace {
                mask,
                value: value.clone(),
            },
        );
    }
    let tokens = tokens_tensor(model, &run.tokens)?;
    let out = model.forward(Some(&tokens), &spec, &ForwardOptions::default())?;
    let logits = last_logits(out.logits, run.tokens.len())?;
    Ok(metrics::compute_with(&logits, &pr.clean_logprobs, pr.answer, pr.wrong, &pr.sets)?[0])
}
