//! AtP* (Kramár et al. 2024): attribution patching with its two fixes.
//!
//! The plain estimate is EAP's, `Δ_u · ∂metric/∂input_v`. It fails most
//! where the attention softmax saturates: a key or query input's change
//! can swing a pattern entry from 0 to 1 while the gradient through the
//! softmax says almost nothing moved. The fixes:
//!
//! - **QK fix.** For an edge into a head's query or key input, patch that
//!   input for real in the receiver's own block (one batched row per edge,
//!   from the base run's cached `resid_pre`; norms, rotary and q/k norms
//!   are the model's own), read the new attention pattern `A'` of the heads
//!   it feeds, and score `Σ (A' − A) ⊙ ∂metric/∂A`: the softmax is exact,
//!   only what follows the pattern is linearised. Value, MLP and logits
//!   edges keep the plain estimate (nothing saturates before their
//!   gradient is taken).
//! - **GradDrop.** Cancellation between paths can hide an edge whose
//!   pieces are large. For each layer `ℓ` a backward pass with the
//!   gradient through block `ℓ`'s residual contribution (`hook_attn_out`,
//!   `hook_mlp_out`) dropped — those outputs replaced by their own values
//!   as constants, so the forward is unchanged — gives an estimate (QK
//!   fix included); GradDrop's score is `Σ_ℓ |estimate_ℓ| / (L − 1)`, a
//!   magnitude used to *rank* edges (the paper's AtP*), not a signed
//!   change.
//!
//! All gradients come from one backward: the batch holds a row per
//! (dropped layer or none) × differentiable metric, each seeded with its
//! metric's gradient, with zero variables at every attention pattern and
//! at the receivers' cheap hooks (`hook_q`/`hook_k`/`hook_v`,
//! `hook_mlp_in`, the final residual), each head's input gradient then in
//! closed form as for EAP ([`super::grads`]): the per-head split norms of
//! `hook_q_input` & co. never enter the autograd graph.

use candle_core::{DType, Result as CResult, Tensor, Var};

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};
use crate::patching::metrics::REGISTRY;
use crate::patching::runs::RunPair;

use super::eap::{grad_metrics, metric_seeds};
use super::grads::{self, ReceiverVars};
use super::graph::{Graph, Qkv, Receiver, ReceiverId, SenderId};
use super::runs::{base_and_source, base_start, edge_row_edits};

/// AtP*'s scores of every sender × receiver pair for one run pair, per
/// registry metric, dense row-major `[sender][receiver]` (NaN where not an
/// edge or the metric has no gradient).
pub struct AtpScores {
    /// The linear estimate (EAP).
    pub plain: Vec<Vec<f32>>,
    /// With the QK fix: a signed change of the metric.
    pub fixed: Vec<Vec<f32>>,
    /// GradDrop's magnitude (with the QK fix), when asked for.
    pub graddrop: Option<Vec<Vec<f32>>>,
}

/// AtP* for one run pair; `graddrop` adds one gradient group per layer.
pub fn atp_star(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    graddrop: bool,
    max_rows: usize,
) -> CResult<AtpScores> {
    atp_star_at(model, graph, run, (graddrop, max_rows), false)
}

/// [`atp_star`], position-aware when `positions`: dense
/// `[sender][receiver][position]`. The plain estimate keeps each
/// position's term of `Δ_u · G_v`; the QK fix patches a q/k edge at one
/// position (the query there, or the key there as every later query
/// reads it) and re-runs the attention for each (edge, position).
pub fn atp_star_at(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (graddrop, max_rows): (bool, usize),
    positions: bool,
) -> CResult<AtpScores> {
    let dev = model.device();
    let dtype = model.dtype();
    let ids = grad_metrics();
    let n_m = ids.len();
    let nl = graph.n_layers;
    let groups = if graddrop { 1 + nl } else { 1 };
    let rows = groups * n_m;
    let t = run.base_tokens.len();
    let d = model.cfg.d_model;
    let tokens = Tensor::new(run.base_tokens.as_slice(), dev)?.unsqueeze(0)?;
    let embed = run
        .base
        .get(HookPoint::Embed)
        .expect("embed captured")
        .clone();
    let embed_edit = || -> CResult<Edit> {
        Ok(Edit::Replace {
            mask: Tensor::ones((1, 1, 1), dtype, dev)?,
            value: embed.to_dtype(dtype)?,
        })
    };
    // The base run's patterns and block outputs (constants for GradDrop).
    let mut spec = HookSpec::new().intervene(HookPoint::Embed, embed_edit()?);
    for l in 0..nl {
        spec = spec
            .capture(HookPoint::Pattern(l))
            .capture(HookPoint::AttnOut(l))
            .capture(HookPoint::MlpOut(l));
    }
    let last = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let base = model.forward(Some(&tokens), &spec, &last)?.cache;
    // The gradient pass: row = group * n_m + metric; group 0 drops nothing,
    // group 1 + ℓ drops block ℓ. Every row computes the same forward
    // values (a dropped output is replaced by itself), so each row's
    // receiver gradients follow from its `hook_q`/`hook_k`/`hook_v`
    // gradients in closed form ([`grads`]) with one row's norm statistics.
    let mut spec = HookSpec::new().intervene(HookPoint::Embed, embed_edit()?);
    let mut pattern_vars = Vec::new();
    let h = graph.n_heads;
    for l in 0..nl {
        let p = Var::zeros((rows, h, t, t), dtype, dev)?;
        spec = spec.intervene(HookPoint::Pattern(l), Edit::Add(p.as_tensor().clone()));
        pattern_vars.push(p);
        if graddrop {
            let m: Vec<f32> = (0..rows).map(|r| f32::from(r / n_m == 1 + l)).collect();
            let mask = Tensor::from_vec(m, (rows, 1, 1), dev)?.to_dtype(dtype)?;
            for hp in [HookPoint::AttnOut(l), HookPoint::MlpOut(l)] {
                let value = base.get(hp).expect("captured").clone();
                spec = spec.intervene(
                    hp,
                    Edit::Replace {
                        mask: mask.clone(),
                        value,
                    },
                );
            }
        }
    }
    let (spec, vars) = ReceiverVars::attach(model, graph, spec, rows, t)?;
    let batch = tokens.broadcast_as((rows, t))?.contiguous()?;
    let out = model.forward(Some(&batch), &spec, &last)?;
    let resid_pre = grads::resid_pre(&out.cache, nl)?
        .into_iter()
        .map(|x| x.narrow(0, 0, 1))
        .collect::<CResult<Vec<_>>>()?;
    drop(out.cache);
    let logits = out.logits.expect("logits").to_dtype(DType::F32)?;
    let seed = metric_seeds(&logits, run, &ids, n_m)?;
    let grads = (&logits * seed)?.sum_all()?.backward()?;
    let raw = vars.take(&grads)?;
    let grad_of = |v: &Var| -> CResult<Tensor> {
        match grads.get(v.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32),
            None => v.as_tensor().zeros_like()?.to_dtype(DType::F32),
        }
    };
    // Linear estimates [rows][sender][receiver]: per block, its receivers'
    // gradients against every sender (pairs that are not edges are
    // never read).
    let (b, s) = base_and_source(graph, run)?;
    let delta = (s - b)?;
    let ns = graph.n_senders();
    let nr = graph.n_receivers();
    // Position-aware: one entry per (sender, receiver, position).
    let per = if positions { t } else { 1 };
    let at = |s: usize, r: usize, p: usize| (s * nr + r) * per + p;
    let mut linear = vec![vec![0f32; ns * nr * per]; rows];
    for l in 0..=nl {
        let recv = graph.receivers_of(l);
        let g = vars.row_grads(model, &resid_pre, &raw, l)?; // [recv, rows, t·d]
                                                             // [positions, senders, recv × rows]: per position, or summed over them.
        let est: Vec<Vec<Vec<f32>>> = if positions {
            let gp = g.reshape((recv.len() * rows, t, d))?.transpose(0, 1)?;
            let dp = delta.transpose(0, 1)?.contiguous()?;
            dp.matmul(&gp.transpose(1, 2)?.contiguous()?)?.to_vec3()?
        } else {
            let g = g.reshape((recv.len() * rows, t * d))?;
            vec![delta.reshape((ns, t * d))?.matmul(&g.t()?)?.to_vec2()?]
        };
        for (p, at_p) in est.into_iter().enumerate() {
            for (si, row) in at_p.into_iter().enumerate() {
                for (j, v) in row.into_iter().enumerate() {
                    linear[j % rows][at(si, recv.start + j / rows, p)] = v;
                }
            }
        }
    }
    // QK fix: [rows of the gradient batch][unit], for q/k edges.
    let mut fix: Vec<Vec<f32>> = linear.clone();
    for (l, pv) in pattern_vars.iter().enumerate() {
        let ga = grad_of(pv)?.reshape((rows, h * t * t))?;
        let a = base
            .get(HookPoint::Pattern(l))
            .expect("captured")
            .to_dtype(DType::F32)?
            .reshape((1, h * t * t))?;
        let edges: Vec<(SenderId, ReceiverId)> = graph
            .receivers_of(l)
            .map(|r| ReceiverId(r as u32))
            .filter(|&r| {
                matches!(
                    graph.receiver(r),
                    Receiver::Head {
                        port: Qkv::Q | Qkv::K,
                        ..
                    }
                )
            })
            .flat_map(|r| (0..ns as u32).map(move |s| (SenderId(s), r)))
            .filter(|&(s, r)| graph.is_edge(s, r))
            .collect();
        let units: Vec<((SenderId, ReceiverId), usize)> = edges
            .iter()
            .flat_map(|&e| (0..per).map(move |p| (e, p)))
            .collect();
        for chunk in units.chunks(max_rows.max(1)) {
            let (es, ps): (Vec<_>, Vec<usize>) = chunk.iter().copied().unzip();
            let ps = positions.then_some(&ps[..]);
            let patterns = patched_patterns(model, graph, run, &delta, l, (&es, ps))?;
            let da = patterns
                .reshape((chunk.len(), h * t * t))?
                .broadcast_sub(&a)?;
            let est: Vec<Vec<f32>> = da.matmul(&ga.t()?.contiguous()?)?.to_vec2()?;
            for (&((s, r), p), row) in chunk.iter().zip(est) {
                for (k, v) in row.into_iter().enumerate() {
                    fix[k][at(s.0 as usize, r.0 as usize, p)] = v;
                }
            }
        }
    }
    let dense = |m: &dyn Fn(usize, usize) -> f32| -> Vec<Vec<f32>> {
        let mut out = vec![vec![f32::NAN; ns * nr * per]; REGISTRY.len()];
        for (k, &mi) in ids.iter().enumerate() {
            for (s, r) in graph.edges() {
                for p in 0..per {
                    let i = at(s.0 as usize, r.0 as usize, p);
                    out[mi][i] = m(k, i);
                }
            }
        }
        out
    };
    let plain = dense(&|k, i| linear[k][i]);
    let fixed = dense(&|k, i| fix[k][i]);
    let graddrop = graddrop.then(|| {
        let norm = (nl.max(2) - 1) as f32;
        dense(&|k, i| (1..groups).map(|g| fix[g * n_m + k][i].abs()).sum::<f32>() / norm)
    });
    Ok(AtpScores {
        plain,
        fixed,
        graddrop,
    })
}

/// Attention patterns of block `l` with each row's q/k edge patched (at
/// its position `at[row]` only, when given).
///
/// # Shapes
/// `delta: [senders, pos, d_model]`; returns `[rows, heads, pos, pos]` (f32)
fn patched_patterns(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    delta: &Tensor,
    l: usize,
    (chunk, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
) -> CResult<Tensor> {
    let spec = HookSpec::new().capture(HookPoint::Pattern(l));
    let spec = edge_row_edits(model, graph, delta, (chunk, at), spec)?;
    // Block `l` only as far as its pattern: its z, output and MLP would
    // not change what is read here.
    let opts = ForwardOptions {
        start: Some(base_start(model, run, l, chunk.len())?),
        stop_before_layer: Some(l + 1),
        pattern_only: true,
        ..Default::default()
    };
    let out = model.forward(None, &spec, &opts)?;
    out.cache
        .get(HookPoint::Pattern(l))
        .expect("captured")
        .to_dtype(DType::F32)
}
