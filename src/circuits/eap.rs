//! Edge attribution patching (EAP) and its integrated-gradients form (EAP-IG).
//!
//! An edge `u -> v` contributes `out_u` to `v`'s input, so patching it
//! changes that input by `Δ_u = out_u(source) − out_u(base)` and, to first
//! order, the metric by `Δ_u · ∂metric/∂input_v`. One backward pass gives
//! `∂metric/∂input_v` for every receiver at once (a zero variable added at
//! each split-input hook: `hook_q_input`, `hook_k_input`, `hook_v_input`,
//! `hook_mlp_in`, and the final residual), and the scores of all edges are
//! one matrix product `Δ [senders, pos·d] × G [receivers, pos·d]ᵀ`.
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
//! Every differentiable metric of the registry is estimated in the same
//! pass: each metric is a row of the batch, seeded with that metric's
//! gradient with respect to the logits (`MetricDef::grad`), so one backward
//! yields each metric's gradient in its own row. Gradients are taken with
//! respect to activations only: weights are not variables and their
//! products go through `model::layers::matmul_weight`, whose backward skips
//! the weight's gradient.

use candle_core::{DType, Result as CResult, Tensor, Var};

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};
use crate::patching::metrics::{self, RunView, REGISTRY};
use crate::patching::runs::RunPair;

use super::graph::Graph;
use super::runs::base_and_source;

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
    let steps = steps.max(1);
    let dev = model.device();
    let ids = grad_metrics();
    let n_m = ids.len();
    let rows = n_m * steps;
    let t = run.base_tokens.len();
    let d = model.cfg.d_model;
    // Interpolated embeddings, row = step * n_m + metric.
    let e_base = run
        .base
        .get(HookPoint::Embed)
        .expect("embed captured")
        .to_dtype(DType::F32)?;
    let e_src = run.source[&HookPoint::Embed].to_dtype(DType::F32)?;
    let alphas: Vec<f32> = (0..rows).map(|r| (r / n_m) as f32 / steps as f32).collect();
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
        let idx: Vec<u32> = (0..rows).map(|r| (r / n_m) as u32).collect();
        let idx = Tensor::new(idx.as_slice(), dev)?;
        for (hp, fix) in activation_fixes(model, graph, run, steps)? {
            spec = spec.intervene(hp, Edit::Add(fix.index_select(&idx, 0)?));
        }
    }
    let mut vars = Vec::new();
    let mut add = |spec: HookSpec, hp: HookPoint, heads: Option<usize>| {
        let v = match heads {
            Some(n) => Var::zeros((rows, t, n, d), model.dtype(), dev)?,
            None => Var::zeros((rows, t, d), model.dtype(), dev)?,
        };
        let spec = spec.intervene(hp, Edit::Add(v.as_tensor().clone()));
        vars.push((heads.unwrap_or(1), v));
        Ok::<_, candle_core::Error>(spec)
    };
    // In graph order: per layer queries, keys, values, MLP; then logits.
    let (h, hkv) = (graph.n_heads, graph.n_kv_heads);
    for l in 0..graph.n_layers {
        spec = add(spec, HookPoint::QInput(l), Some(h))?;
        spec = add(spec, HookPoint::KInput(l), Some(hkv))?;
        spec = add(spec, HookPoint::VInput(l), Some(hkv))?;
        spec = add(spec, HookPoint::MlpIn(l), None)?;
    }
    spec = add(spec, HookPoint::ResidPost(graph.n_layers - 1), None)?;
    let tokens = Tensor::new(run.base_tokens.as_slice(), dev)?
        .unsqueeze(0)?
        .broadcast_as((rows, t))?
        .contiguous()?;
    let opts = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let logits = model
        .forward(Some(&tokens), &spec, &opts)?
        .logits
        .expect("logits")
        .to_dtype(DType::F32)?;
    let seed = metric_seeds(&logits, run, &ids, n_m)?;
    let objective = (&logits * seed)?.sum_all()?;
    let grads = objective.backward()?;
    // Gradient per receiver, averaged over steps: [n_m, receivers, t*d].
    let mut per_layer = Vec::new();
    for (heads, var) in &vars {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?,
            None => var.as_tensor().zeros_like()?.to_dtype(DType::F32)?,
        };
        let g = g.reshape((steps, n_m, t, *heads, d))?.mean(0)?; // [n_m, t, heads, d]
        per_layer.push(g.transpose(1, 2)?.reshape((n_m, *heads, t * d))?);
    }
    let g = Tensor::cat(&per_layer, 1)?;
    debug_assert_eq!(g.dim(1)?, graph.n_receivers());
    let (base, src) = base_and_source(graph, run)?;
    let delta = (src - base)?.reshape((graph.n_senders(), t * d))?;
    // [n_m, senders, receivers]
    let scores = delta
        .unsqueeze(0)?
        .broadcast_as((n_m, graph.n_senders(), t * d))?
        .contiguous()?
        .matmul(&g.transpose(1, 2)?.contiguous()?)?;
    let scores: Vec<Vec<Vec<f32>>> = scores.to_vec3()?;
    let mut out = vec![vec![f32::NAN; graph.n_senders() * graph.n_receivers()]; REGISTRY.len()];
    for (k, &mi) in ids.iter().enumerate() {
        for (s, row) in scores[k].iter().enumerate() {
            for (r, &v) in row.iter().enumerate() {
                let (s, r) = (
                    super::graph::SenderId(s as u32),
                    super::graph::ReceiverId(r as u32),
                );
                if graph.is_edge(s, r) {
                    out[mi][graph.idx(s, r)] = v;
                }
            }
        }
    }
    Ok(out)
}

/// `[rows, d_vocab]`: row `step * n_m + k` holds metric `ids[k]`'s gradient
/// with respect to that row's logits.
pub(crate) fn metric_seeds(
    logits: &Tensor,
    run: &RunPair,
    ids: &[usize],
    n_m: usize,
) -> CResult<Tensor> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let lps: Vec<Vec<f32>> = metrics::log_softmax(logits)?.to_vec2()?;
    let clean_lp: Vec<f32> = run.clean_logprobs.to_dtype(DType::F32)?.to_vec1()?;
    let clean_p: Vec<f32> = clean_lp.iter().map(|x| x.exp()).collect();
    let vocab = rows[0].len();
    let mut seed = vec![0f32; rows.len() * vocab];
    for (r, (row, lp)) in rows.iter().zip(&lps).enumerate() {
        let view = RunView {
            logits: row,
            logprobs: lp,
            clean_logprobs: &clean_lp,
            clean_probs: &clean_p,
            answer: run.answer as usize,
            wrong: run.wrong as usize,
            sets: &run.sets,
        };
        let grad = REGISTRY[ids[r % n_m]].grad.expect("a gradient metric");
        grad(&view, &mut seed[r * vocab..(r + 1) * vocab]);
    }
    Tensor::from_vec(seed, (rows.len(), vocab), logits.device())
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
