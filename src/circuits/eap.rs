//! Edge attribution patching (EAP) and its integrated-gradients form (EAP-IG).
//!
//! An edge `u -> v` contributes `out_u` to `v`'s input, so patching it
//! changes that input by `Δ_u = out_u(source) − out_u(base)` and, to first
//! order, the metric by `Δ_u · ∂metric/∂input_v`. One forward and one
//! backward give `∂metric/∂input_v` for every receiver at once (zero
//! variables at cheap hooks, each head's input gradient then in closed
//! form: see [`super::grads`]), and the scores of all edges are one matrix
//! product per block, `Δ [senders, pos·d] × G [receivers, pos·d]ᵀ`.
//!
//! EAP-IG (Hanna et al. 2024) averages the gradient over `m` points on the
//! straight line between the base run's and the source run's input
//! embeddings, `α = 0, 1/m, …, (m−1)/m` (a left Riemann sum of the path
//! integral), so `m = 1` is EAP exactly and the estimate converges to the
//! integrated gradient as `m` grows.
//!
//! [`IgOn::Activations`] interpolates every sender's output instead (the
//! EAP-IG library's `EAP-IG-activations`): at step `α` each head and MLP
//! *writes* `out(base) + α·Δ` whatever its own inputs, so every receiver
//! reads the interpolated residual; gradients still flow through each
//! component's own computation at that point. The forced values are
//! constants added to what the component computes there (`interp −
//! actual`), found first by running each block on the interpolated
//! residual (two block passes per layer, one row per step).
//!
//! Every differentiable metric of the registry is estimated from the same
//! forward pass (one row per step): each metric's backward is seeded with
//! its gradient with respect to the logits (`MetricDef::grad`); metrics
//! whose seeds are equal (`multi_logit_diff` without answer lists is
//! `logit_diff`) share a backward. Gradients are taken with respect to
//! activations only: weights are not variables and their products go
//! through `model::layers::matmul_weight`, whose backward skips the
//! weight's gradient. Neither per-head split norms nor one forward row per
//! metric are in the graph any more: `patchbench bench circuit` measures
//! the time and peak memory on gpt2-small.

use candle_core::{DType, Result as CResult, Tensor};

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};
use crate::patching::metrics::REGISTRY;
use crate::patching::runs::RunPair;

use super::grads::{self, ReceiverVars};
use super::graph::{Graph, ReceiverId, SenderId};
use super::runs::base_and_source;
use super::seeds::{gradient_groups, FromGroup};

/// Registry indices of the metrics with a gradient.
pub fn grad_metrics() -> Vec<usize> {
    (0..REGISTRY.len())
        .filter(|&i| REGISTRY[i].grad.is_some())
        .collect()
}

/// What EAP-IG interpolates between the base and the source run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IgOn {
    /// The input embeddings (everything downstream recomputed).
    #[default]
    Inputs,
    /// Every sender's output.
    Activations,
}

/// EAP-IG scores of every sender × receiver pair for one run pair, per
/// registry metric (dense, row-major `[sender][receiver]`); metrics
/// without a gradient, and pairs that are not edges, are NaN.
pub fn eap_ig(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    steps: usize,
) -> CResult<Vec<Vec<f32>>> {
    eap_ig_on(model, graph, run, steps, IgOn::Inputs)
}

/// [`eap_ig`] interpolating the inputs or the activations.
pub fn eap_ig_on(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    steps: usize,
    on: IgOn,
) -> CResult<Vec<Vec<f32>>> {
    eap_ig_at(model, graph, run, (steps, on), false)
}

/// [`eap_ig_on`], position-aware when `positions`: the score of edge
/// `(s, r)` at position `p` is `Δ_s[p] · G_r[p]` (the position-free score
/// is their sum over `p`), dense `[sender][receiver][position]`.
pub fn eap_ig_at(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (steps, on): (usize, IgOn),
    positions: bool,
) -> CResult<Vec<Vec<f32>>> {
    let steps = steps.max(1);
    let dev = model.device();
    let ids = grad_metrics();
    // One row per step: every metric's gradient comes from the same forward.
    let rows = steps;
    let t = run.base_tokens.len();
    let d = model.cfg.d_model;
    // Interpolated embeddings, one row per step.
    let e_base = run
        .base
        .get(HookPoint::Embed)
        .expect("embed captured")
        .to_dtype(DType::F32)?;
    let e_src = run.source[&HookPoint::Embed].to_dtype(DType::F32)?;
    let alphas: Vec<f32> = (0..rows).map(|r| r as f32 / steps as f32).collect();
    let alpha = Tensor::from_vec(alphas, (rows, 1, 1), dev)?;
    let embeds = e_base.broadcast_add(&(e_src - &e_base)?.broadcast_mul(&alpha)?)?;
    let mut spec = HookSpec::new().intervene(
        HookPoint::Embed,
        Edit::Replace {
            mask: Tensor::ones((1, 1, 1), model.dtype(), dev)?,
            value: embeds.to_dtype(model.dtype())?,
        },
    );
    // (The base run's own embedding edit, Gaussian noise, is inside the
    // captured base embeddings the interpolation starts from.)
    if on == IgOn::Activations {
        for (hp, fix) in activation_fixes(model, graph, run, steps)? {
            spec = spec.intervene(hp, Edit::Add(fix));
        }
    }
    let (spec, vars) = ReceiverVars::attach(model, graph, spec, rows, t)?;
    let tokens = Tensor::new(run.base_tokens.as_slice(), dev)?
        .unsqueeze(0)?
        .broadcast_as((rows, t))?
        .contiguous()?;
    let opts = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let out = model.forward(Some(&tokens), &spec, &opts)?;
    let resid_pre = grads::resid_pre(&out.cache, graph.n_layers)?;
    drop(out.cache);
    let logits = out.logits.expect("logits").to_dtype(DType::F32)?;
    let (raw, from) = gradient_groups(&logits, run, &ids, &vars)?;
    // The forward graph is no longer needed.
    drop(logits);
    drop(spec);
    let n_g = raw.len();
    let stacked = (0..raw[0].len())
        .map(|v| Tensor::cat(&raw.iter().map(|r| &r[v]).collect::<Vec<_>>(), 0))
        .collect::<CResult<Vec<_>>>()?;
    drop(raw);
    let (base, src) = base_and_source(graph, run)?;
    let delta = (src - base)?.reshape((graph.n_senders(), t * d))?;
    // Per block, its receivers' gradients averaged over steps
    // [receivers, groups, t*d], scored at once.
    let grads_of = |l| vars.block_grads(model, &resid_pre, &stacked, n_g, l);
    match positions {
        true => super::positions::edge_scores_at(graph, &delta, t, (&ids, &from), grads_of),
        false => edge_scores(graph, &delta, &ids, &from, grads_of),
    }
}

/// `Δ · G` for every edge: per block, the receivers of that block (their
/// gradients from `grads_of(l)`, `l = n_layers` for the logits) against
/// the senders upstream of it (the other pairs are not edges), every
/// metric in one product; dense `[sender][receiver]` per registry metric,
/// NaN elsewhere.
///
/// # Shapes
/// `delta: [senders, pos · d]`, `grads_of(l): [receivers of l, groups,
/// pos · d]`; metric `ids[k]` reads group `from[k].group`, scaled.
pub(crate) fn edge_scores(
    graph: &Graph,
    delta: &Tensor,
    ids: &[usize],
    from: &[FromGroup],
    mut grads_of: impl FnMut(usize) -> CResult<Tensor>,
) -> CResult<Vec<Vec<f32>>> {
    let n_g = from.iter().map(|f| f.group + 1).max().unwrap_or(0);
    let nr = graph.n_receivers();
    let mut out = vec![vec![f32::NAN; graph.n_senders() * nr]; REGISTRY.len()];
    for l in 0..=graph.n_layers {
        let recv = graph.receivers_of(l);
        let ns = graph.senders_read_by(l);
        let g = grads_of(l)?;
        let g = g.reshape((recv.len() * n_g, g.dim(2)?))?;
        // [ns, receivers of l × gradient groups]
        let scores: Vec<Vec<f32>> = delta.narrow(0, 0, ns)?.matmul(&g.t()?)?.to_vec2()?;
        for (s, row) in scores.iter().enumerate() {
            for (j, r) in recv.clone().enumerate() {
                let (s, r) = (SenderId(s as u32), ReceiverId(r as u32));
                if !graph.is_edge(s, r) {
                    continue;
                }
                for (&m, f) in ids.iter().zip(from) {
                    out[m][graph.idx(s, r)] = f.scale * row[j * n_g + f.group];
                }
            }
        }
    }
    Ok(out)
}

/// The constants that make every head and MLP write its interpolated
/// output at each step: `(hook, interp − actual)`, one row per step.
fn activation_fixes(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    steps: usize,
) -> CResult<Vec<(HookPoint, Tensor)>> {
    use crate::model::StartState;
    let (dev, dtype) = (model.device(), model.dtype());
    let (base, src) = base_and_source(graph, run)?;
    let delta = (src - &base)?; // [senders, pos, d]
    let alphas: Vec<f32> = (0..steps).map(|k| k as f32 / steps as f32).collect();
    let alpha = Tensor::from_vec(alphas, (steps, 1, 1, 1), dev)?;
    let h = graph.n_heads;
    let mut out = Vec::new();
    for l in 0..graph.n_layers {
        let before = graph.senders_before(l);
        let shift = delta.narrow(0, 0, before)?.sum(0)?; // [pos, d]
        let resid_base = run
            .base
            .get(HookPoint::ResidPre(l))
            .expect("base run captured resid_pre")
            .to_dtype(DType::F32)?;
        let alpha3 = alpha.squeeze(3)?;
        let resid = resid_base
            .broadcast_add(&shift.unsqueeze(0)?.broadcast_mul(&alpha3)?)?
            .to_dtype(dtype)?;
        // Heads of block l: [steps, pos, heads, d], as the hook holds them.
        let heads = |x: &Tensor| -> CResult<Tensor> {
            x.narrow(0, before, h)?.transpose(0, 1)?.unsqueeze(0)
        };
        let interp_heads = heads(&base)?.broadcast_add(&heads(&delta)?.broadcast_mul(&alpha)?)?;
        let m = before + h;
        let interp_mlp = base
            .get(m)?
            .unsqueeze(0)?
            .broadcast_add(&delta.get(m)?.unsqueeze(0)?.broadcast_mul(&alpha3)?)?;
        let block = |spec: &HookSpec| {
            let opts = ForwardOptions {
                start: Some(StartState {
                    layer: l,
                    resid: resid.clone(),
                    pos_offset: 0,
                    past: None,
                    batch: steps,
                    packing: None,
                }),
                last_pos_only: true,
                stop_before_layer: Some(l + 1),
                ..Default::default()
            };
            model.forward(None, spec, &opts)
        };
        let hp = HookPoint::AttnResult(l);
        let first = block(&HookSpec::new().capture(hp))?;
        let actual = first
            .cache
            .get(hp)
            .expect("captured")
            .to_dtype(DType::F32)?;
        let forced = Edit::Replace {
            mask: Tensor::ones((1, 1, 1, 1), dtype, dev)?,
            value: interp_heads.to_dtype(dtype)?,
        };
        let mo = HookPoint::MlpOut(l);
        let second = block(&HookSpec::new().intervene(hp, forced).capture(mo))?;
        let actual_mlp = second
            .cache
            .get(mo)
            .expect("captured")
            .to_dtype(DType::F32)?;
        out.push((hp, (interp_heads - actual)?.to_dtype(dtype)?));
        out.push((mo, (interp_mlp - actual_mlp)?.to_dtype(dtype)?));
    }
    Ok(out)
}
