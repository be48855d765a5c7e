//! The two runs an edge is patched between, and what each sender wrote.
//!
//! The unpatched runs come from the sweep machinery (`patching::runs`):
//! prompt pairs, Gaussian noise samples and ablations work as in sweeps.
//! They capture every sender's output (`hook_embed` + positions as
//! `blocks.0.hook_resid_pre`, `attn.hook_result`, `hook_mlp_out`), and the
//! base run's `resid_pre` at every layer, which exact patching resumes from.

use std::collections::HashSet;

use candle_core::{Result as CResult, Tensor};

use crate::model::{HookPoint, Transformer};
use crate::patching::runs::{build_runs, PairBaselines, RunPair};
use crate::patching::{Direction, Metrics, PreparedPair, SweepSpec, Target};

use super::graph::Graph;
use super::CircuitError;

/// The hooks whose activations make up the senders' outputs, plus the
/// embeddings (interpolated by EAP-IG).
pub fn sender_hooks(graph: &Graph) -> HashSet<HookPoint> {
    let mut h = HashSet::from([HookPoint::Embed, HookPoint::ResidPre(0)]);
    for l in 0..graph.n_layers {
        h.insert(HookPoint::AttnResult(l));
        h.insert(HookPoint::MlpOut(l));
    }
    h
}

/// Unpatched runs of every pair (and noise sample) and the baselines.
pub struct Runs {
    pub runs: Vec<RunPair>,
    pub baselines: Vec<PairBaselines>,
    /// Forward passes spent.
    pub passes: usize,
}

impl Runs {
    /// Mean baselines, normalised metrics filled in (1 = clean, 0 = corrupted).
    pub fn mean_baselines(&self) -> (Metrics, Metrics) {
        let mut clean = Metrics::mean(&self.baselines.iter().map(|b| b.clean).collect::<Vec<_>>());
        let mut corr = Metrics::mean(
            &self
                .baselines
                .iter()
                .map(|b| b.corrupted)
                .collect::<Vec<_>>(),
        );
        let (c, k) = (clean, corr);
        clean.normalize(&c, &k);
        corr.normalize(&c, &k);
        (clean, corr)
    }
}

/// Runs the unpatched forwards: the base run is the corrupted one when
/// denoising, the clean one when noising (as in sweeps).
pub fn build(
    model: &Transformer,
    graph: &Graph,
    pairs: &[PreparedPair],
    spec: &CircuitSpecRuns,
) -> Result<Runs, CircuitError> {
    let mut sweep = SweepSpec::new(Target::ResidPre);
    sweep.direction = spec.direction;
    sweep.corruption = spec.corruption.clone();
    crate::patching::engine::check_inputs(model, pairs, &sweep)?;
    let (runs, baselines, passes) = build_runs(model, pairs, &sweep, &sender_hooks(graph))?;
    Ok(Runs {
        runs,
        baselines,
        passes,
    })
}

/// What the unpatched runs depend on.
#[derive(Debug, Clone)]
pub struct CircuitSpecRuns {
    pub direction: Direction,
    pub corruption: crate::patching::Corruption,
}

/// Every sender's output, stacked in graph order.
///
/// # Shapes
/// returns `[n_senders, pos, d_model]` (f32)
pub fn sender_outputs(graph: &Graph, get: impl Fn(HookPoint) -> Option<Tensor>) -> CResult<Tensor> {
    let missing = |h: HookPoint| candle_core::Error::Msg(format!("run did not capture {h}"));
    let take = |h: HookPoint| get(h).ok_or_else(|| missing(h));
    let mut parts = vec![take(HookPoint::ResidPre(0))?.squeeze(0)?.unsqueeze(0)?];
    for l in 0..graph.n_layers {
        // [1, pos, heads, d] -> [heads, pos, d]
        parts.push(
            take(HookPoint::AttnResult(l))?
                .squeeze(0)?
                .transpose(0, 1)?,
        );
        parts.push(take(HookPoint::MlpOut(l))?.squeeze(0)?.unsqueeze(0)?);
    }
    Tensor::cat(&parts, 0)?
        .to_dtype(candle_core::DType::F32)?
        .contiguous()
}

/// The base run's and the source run's sender outputs.
pub fn base_and_source(graph: &Graph, run: &RunPair) -> CResult<(Tensor, Tensor)> {
    let base = sender_outputs(graph, |h| run.base.get(h).cloned())?;
    let src = sender_outputs(graph, |h| run.source.get(&h).cloned())?;
    Ok((base, src))
}
