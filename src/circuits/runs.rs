//! The two runs an edge is patched between, and what each sender wrote.
//!
//! The unpatched runs come from the sweep machinery (`patching::runs`):
//! prompt pairs, Gaussian noise samples and ablations work as in sweeps.
//! They capture every sender's output (`hook_embed` + positions as
//! `blocks.0.hook_resid_pre`, `attn.hook_result`, `hook_mlp_out`), and the
//! base run's `resid_pre` at every layer, which exact patching resumes from.
//! Pairs may have different token lengths: nothing is batched across runs.

use std::collections::HashSet;

use candle_core::{Result as CResult, Tensor};

use crate::model::Transformer;
use crate::model::{Edit, ForwardOptions, ForwardOutput, HookPoint, HookSpec, StartState};
use crate::patching::runs::{build_runs, PairBaselines, RunPair};
use crate::patching::{Direction, Metrics, PreparedPair, SweepSpec, Target};

use super::graph::{Graph, Qkv, Receiver, ReceiverId, SenderId};
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
    // Edges have no position axis: every method scores, checks and
    // measures faithfulness run by run (each pair at its own length) and
    // averages over the runs, so pairs may differ in length. Checked as a
    // position-free target; an ablation (one source activation for every
    // pair) still needs one length, and the check says which pairs differ.
    let lengths: std::collections::BTreeMap<usize, Vec<usize>> =
        pairs
            .iter()
            .enumerate()
            .fold(Default::default(), |mut by, (i, p)| {
                by.entry(p.n_pos()).or_default().push(i);
                by
            });
    if lengths.len() > 1 && spec.corruption.is_ablation() {
        let groups: Vec<(usize, Vec<usize>)> = lengths.into_iter().collect();
        return Err(CircuitError::Invalid(format!(
            "{} ablation patches one source activation, position by position, into every \
             pair, so a circuit search over it needs pairs of one token length ({}); use \
             --corruption prompt or gaussian, or a dataset of one length",
            spec.corruption.name(),
            crate::patching::prepare::describe_groups(&groups)
        )));
    }
    let mut check = sweep.clone();
    check.target = Target::HeadOut;
    crate::patching::engine::check_inputs(model, pairs, &check)?;
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

/// Which split-input hook a receiver reads through, and its head axis
/// `(head, heads)`.
pub fn receiver_hook(graph: &Graph, r: ReceiverId) -> (HookPoint, Option<(usize, usize)>) {
    match graph.receiver(r) {
        Receiver::Head { layer, head, port } => match port {
            Qkv::Q => (HookPoint::QInput(layer), Some((head, graph.n_heads))),
            Qkv::K => (HookPoint::KInput(layer), Some((head, graph.n_kv_heads))),
            Qkv::V => (HookPoint::VInput(layer), Some((head, graph.n_kv_heads))),
        },
        Receiver::Mlp { layer } => (HookPoint::MlpIn(layer), None),
        Receiver::Logits => (HookPoint::ResidPost(graph.n_layers - 1), None),
    }
}

/// One edge per batch row: row `b` adds `Δ_s` (sender `s`'s change) at
/// its receiver's split-input hook, on that receiver's head only; rows
/// that patch nothing at a hook add zeros there. One `Add` edit per hook.
/// Position-aware rows (`at[b]`) add `Δ_s ⊙ 1[at[b]]`: the change at that
/// position only.
///
/// # Shapes
/// `delta: [senders, pos, d_model]`
pub(crate) fn edge_row_edits(
    model: &Transformer,
    graph: &Graph,
    delta: &Tensor,
    (chunk, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    mut spec: HookSpec,
) -> CResult<HookSpec> {
    let (dev, dtype) = (model.device(), model.dtype());
    let (t, d) = (delta.dim(1)?, delta.dim(2)?);
    let rows = chunk.len();
    // Per hook: the rows' edits.
    let mut edits: Vec<(HookPoint, Vec<Tensor>)> = Vec::new();
    for (row, &(s, r)) in chunk.iter().enumerate() {
        let (hp, head) = receiver_hook(graph, r);
        let k = match edits.iter().position(|(h, _)| *h == hp) {
            Some(k) => k,
            None => {
                let zero = match head {
                    Some((_, n)) => Tensor::zeros((t, n, d), dtype, dev)?,
                    None => Tensor::zeros((t, d), dtype, dev)?,
                };
                edits.push((hp, vec![zero; rows]));
                edits.len() - 1
            }
        };
        let mut du = delta.get(s.0 as usize)?.to_dtype(dtype)?; // [pos, d]
        if let Some(p) = at.map(|a| a[row]) {
            let mut onehot = vec![0f32; t];
            onehot[p] = 1.0;
            let onehot = Tensor::from_vec(onehot, (t, 1), dev)?.to_dtype(dtype)?;
            du = du.broadcast_mul(&onehot)?;
        }
        edits[k].1[row] = match head {
            Some((h, n)) => {
                let mut onehot = vec![0f32; n];
                onehot[h] = 1.0;
                let onehot = Tensor::from_vec(onehot, (1, n, 1), dev)?.to_dtype(dtype)?;
                du.unsqueeze(1)?.broadcast_mul(&onehot)?
            }
            None => du,
        };
    }
    for (hp, rows_t) in edits {
        spec = spec.intervene(hp, Edit::Add(Tensor::stack(&rows_t, 0)?));
    }
    Ok(spec)
}

/// A forward of `rows` batch rows resumed at block `layer` from the base
/// run's cached `resid_pre` there (prefix reuse: the blocks before it are
/// the base run's), last-position logits only, stopping before block
/// `stop_before_layer` when given.
pub(crate) fn resume_from_base(
    model: &Transformer,
    run: &RunPair,
    layer: usize,
    rows: usize,
    spec: &HookSpec,
    stop_before_layer: Option<usize>,
) -> CResult<ForwardOutput> {
    let opts = ForwardOptions {
        start: Some(base_start(model, run, layer, rows)?),
        last_pos_only: true,
        stop_before_layer,
        ..Default::default()
    };
    model.forward(None, spec, &opts)
}

/// The start of a pass of `rows` rows from the base run's cached
/// `resid_pre` at `layer`, every position recomputed.
pub(crate) fn base_start<'a>(
    model: &Transformer,
    run: &RunPair,
    layer: usize,
    rows: usize,
) -> CResult<StartState<'a>> {
    let resid = run
        .base
        .get(HookPoint::ResidPre(layer))
        .expect("base run captured resid_pre")
        .to_dtype(model.dtype())?;
    Ok(StartState {
        layer,
        resid,
        pos_offset: 0,
        past: None,
        batch: rows,
        packing: None,
    })
}

/// For the circuit modules' unit tests: a random model of a `random:`
/// preset (seed 7, f32), its graph, and the denoising runs of one prompt
/// pair given as token ids (answer 5, wrong 8).
#[cfg(test)]
pub(crate) fn test_runs(
    preset: &str,
    (clean, corrupted): (&[u32], &[u32]),
) -> (Transformer, Graph, Runs) {
    use candle_core::{DType, Device};
    let cfg = crate::model::random::preset_config(preset).unwrap();
    let w = crate::model::random::random_weights(&cfg, 7, &Device::Cpu, DType::F32).unwrap();
    let m = Transformer::new(cfg, w).unwrap();
    let g = Graph::new(&m.cfg);
    let pair = crate::patching::PreparedPair {
        clean: clean.to_vec(),
        corrupted: corrupted.to_vec(),
        answer: 5,
        wrong: 8,
        sets: Default::default(),
    };
    let spec = CircuitSpecRuns {
        direction: crate::patching::Direction::Denoise,
        corruption: crate::patching::Corruption::Prompt,
    };
    let runs = build(&m, &g, &[pair], &spec).unwrap();
    (m, g, runs)
}
