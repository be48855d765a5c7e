//! Path patching (Wang et al. 2022, the IOI paper): the effect of a sender
//! on a set of receivers through the paths that avoid every other head.
//!
//! The two-step procedure, per query (a sender `u` and a receiver set `R`):
//!
//! 1. run the base input with `u`'s output taken from the source run and
//!    every other attention head's output frozen to its base-run value;
//!    MLPs are recomputed (they are part of the paths, as in the paper),
//!    unless [`PathOptions::freeze_mlps`] freezes them too. Record what
//!    each receiver in `R` reads (its input before its own norm);
//! 2. run the base input again with each receiver in `R` reading exactly
//!    its recorded input (a replacement, so one receiver's change never
//!    reaches another receiver) and everything downstream recomputed; the
//!    metric's change is the path effect.
//!
//! LayerNorm ([`LnMode`]): by default every norm is recomputed on the
//! input it sees — the IOI paper's procedure as its code runs it (the
//! `path_patching` of its repository freezes heads' `hook_q`/`hook_k`/
//! `hook_v` and, optionally, MLP outputs, and never touches a norm's
//! `hook_scale`), and as TransformerLens's hooked forward does. With
//! [`LnMode::Freeze`] each receiver reads its step-1 input through its own
//! norm with the *base run's* scale (`ln1.hook_scale` for a head's query,
//! key or value, `ln2.hook_scale` for an MLP, `ln_final.hook_scale` for
//! the logits; the centring and the norm's weights still apply): the
//! receiver's normalised input then moves linearly with the patched paths'
//! contribution, as in direct logit attribution with a frozen scale.
//! Everything downstream of the receivers recomputes its norms either way.
//! A frozen head receiver is patched at `hook_q`/`hook_k`/`hook_v` (its
//! normalised, projected input, computed here with
//! `Norm::forward_with_scale` and the head's own projection), an MLP at
//! `hook_mlp_in` plus `ln2.hook_scale`, the logits at the final
//! `resid_post` plus `ln_final.hook_scale`.
//!
//! With MLPs frozen, step 1 leaves every receiver reading `resid + Δ_u`, so
//! path patching a single receiver equals exact edge patching of `u -> v`
//! (tests hold it); with MLPs live it adds the paths `u -> m_i -> v`.
//!
//! Batched: each query is a batch row; step 1 starts at the earliest
//! sender's block, step 2 at the earliest receiver's block, both from the
//! base run's cached `resid_pre` (prefix reuse).

use candle_core::{DType, Result as CResult, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::{Edit, HookPoint, HookSpec, Transformer};
use crate::patching::metrics::{self, Metrics};
use crate::patching::runs::RunPair;

use super::graph::{Graph, Qkv, Receiver, ReceiverId, Sender, SenderId};
use super::runs::{receiver_hook, resume_from_base};

/// How LayerNorm scales behave in the two steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LnMode {
    /// Recomputed on the patched input (the IOI paper's code).
    #[default]
    Recompute,
    /// The receivers' norm scales held at the base run's values.
    Freeze,
}

/// Choices of the procedure; the defaults are the IOI paper's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathOptions {
    /// Freeze MLP outputs to the base run's as well as heads' (direct
    /// paths only).
    #[serde(default)]
    pub freeze_mlps: bool,
    #[serde(default)]
    pub ln: LnMode,
}

/// One path-patching run: a sender and the receivers its paths end at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathQuery {
    pub sender: SenderId,
    pub receivers: Vec<ReceiverId>,
}

/// Why a query cannot run (checked before any forward pass). Every
/// [`PathOptions`] is valid with every query; they stay in the signature
/// for options that may not be.
pub fn check_query(graph: &Graph, q: &PathQuery, _opts: &PathOptions) -> Result<(), String> {
    if q.receivers.is_empty() {
        return Err(format!(
            "path patching from {} needs at least one receiver",
            graph.sender_name(q.sender)
        ));
    }
    for &r in &q.receivers {
        if !graph.is_edge(q.sender, r) {
            return Err(format!(
                "{} is not downstream of {}: path patching needs receivers after the sender",
                graph.receiver_name(r),
                graph.sender_name(q.sender)
            ));
        }
    }
    Ok(())
}

/// Every registry metric (normalised ones NaN) of each query's step-2 run.
pub fn path_patch(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    queries: &[PathQuery],
    opts: &PathOptions,
    max_rows: usize,
) -> CResult<Vec<Metrics>> {
    path_patch_at(model, graph, run, (queries, None), opts, max_rows)
}

/// [`path_patch`], position-aware where `at` is given: query `i`'s sender
/// patched at token position `at[i]` only in step 1. Heads are frozen and
/// MLPs and norms act per position, so what every receiver reads then
/// differs from the base run at that position only: step 2 patches the
/// receivers there.
pub fn path_patch_at(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (queries, at): (&[PathQuery], Option<&[usize]>),
    opts: &PathOptions,
    max_rows: usize,
) -> CResult<Vec<Metrics>> {
    for q in queries {
        check_query(graph, q, opts).map_err(candle_core::Error::Msg)?;
    }
    let mut order: Vec<usize> = (0..queries.len()).collect();
    let start = |i: usize| sender_layer(graph, queries[i].sender);
    order.sort_by_key(|&i| start(i));
    let mut out = vec![Metrics::nan(); queries.len()];
    let frozen = match opts.ln {
        LnMode::Freeze if !queries.is_empty() => Some(base_scales(model, graph, run)?),
        _ => None,
    };
    for chunk in order.chunks(max_rows.max(1)) {
        let qs: Vec<&PathQuery> = chunk.iter().map(|&i| &queries[i]).collect();
        let qs_at: Option<Vec<usize>> = at.map(|a| chunk.iter().map(|&i| a[i]).collect());
        let inputs = step1(model, graph, run, (&qs, qs_at.as_deref()), opts)?;
        let m = step2(model, graph, run, &qs, &inputs, frozen.as_ref())?;
        for (&i, m) in chunk.iter().zip(m) {
            out[i] = m;
        }
    }
    Ok(out)
}

/// The block a sender writes in (`input`: 0).
fn sender_layer(graph: &Graph, s: SenderId) -> usize {
    match graph.sender(s) {
        Sender::Input => 0,
        Sender::Head { layer, .. } | Sender::Mlp { layer } => layer,
    }
}

/// What the receivers read in step 1, by the hook that shows it:
/// `resid_pre` (heads), `resid_mid` (MLPs of sequential blocks) and the
/// final `resid_post` (logits), each `[rows, pos, d_model]`.
struct Step1 {
    cache: crate::model::ActivationCache,
}

impl Step1 {
    fn input_of(&self, graph: &Graph, r: ReceiverId) -> Tensor {
        let hp = match graph.receiver(r) {
            Receiver::Head { layer, .. } => HookPoint::ResidPre(layer),
            Receiver::Mlp { layer } if graph.parallel => HookPoint::ResidPre(layer),
            Receiver::Mlp { layer } => HookPoint::ResidMid(layer),
            Receiver::Logits => HookPoint::ResidPost(graph.n_layers - 1),
        };
        self.cache.get(hp).expect("step 1 captured it").clone()
    }
}

/// `[rows, 1, n, 1]` (or `[rows, 1, 1]` when `n` is `None`): 1 where
/// `pick(row, i)`; with `at = (positions, t)`, `[rows, t, n, 1]` (or
/// `[rows, t, 1]`), 1 only at each row's position.
fn row_mask(
    rows: usize,
    n: Option<usize>,
    pick: impl Fn(usize, usize) -> bool,
    at: Option<(&[usize], usize)>,
    model: &Transformer,
) -> CResult<Tensor> {
    let w = n.unwrap_or(1);
    let t = at.map_or(1, |(_, t)| t);
    let v: Vec<f32> = (0..rows * t * w)
        .map(|k| {
            let (b, p, i) = (k / (t * w), (k / w) % t, k % w);
            let on = pick(b, i) && at.is_none_or(|(a, _)| a[b] == p);
            if on {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let x = Tensor::from_vec(v, rows * t * w, model.device())?;
    match n {
        Some(n) => x.reshape((rows, t, n, 1)),
        None => x.reshape((rows, t, 1)),
    }?
    .to_dtype(model.dtype())
}

fn step1(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (qs, at): (&[&PathQuery], Option<&[usize]>),
    opts: &PathOptions,
) -> CResult<Step1> {
    let rows = qs.len();
    let at = at.map(|a| (a, run.base_tokens.len()));
    let dtype = model.dtype();
    let s0 = qs
        .iter()
        .map(|q| sender_layer(graph, q.sender))
        .min()
        .unwrap_or(0);
    let is = |b: usize, s: Sender| graph.sender(qs[b].sender) == s;
    let base = |hp: HookPoint| -> CResult<Tensor> {
        run.base
            .get(hp)
            .expect("base run captured it")
            .to_dtype(dtype)
    };
    let src = |hp: HookPoint| -> CResult<Tensor> { run.source[&hp].to_dtype(dtype) };
    let mut spec = HookSpec::new();
    if s0 == 0 && (0..rows).any(|b| is(b, Sender::Input)) {
        let hp = HookPoint::ResidPre(0);
        let m = row_mask(rows, None, |b, _| is(b, Sender::Input), at, model)?;
        spec = spec.intervene(hp, Edit::Add((src(hp)? - base(hp)?)?.broadcast_mul(&m)?));
    }
    let ones = Tensor::ones((1, 1, 1, 1), dtype, model.device())?;
    for l in s0..graph.n_layers {
        // Heads: all frozen at the base run's output, the sender's at the source's.
        let hp = HookPoint::AttnResult(l);
        let m = row_mask(
            rows,
            Some(graph.n_heads),
            |b, h| is(b, Sender::Head { layer: l, head: h }),
            at,
            model,
        )?;
        let value = base(hp)?.broadcast_add(&(src(hp)? - base(hp)?)?.broadcast_mul(&m)?)?;
        spec = spec.intervene(
            hp,
            Edit::Replace {
                mask: ones.clone(),
                value,
            },
        );
        let hp = HookPoint::MlpOut(l);
        let m = row_mask(
            rows,
            None,
            |b, _| is(b, Sender::Mlp { layer: l }),
            at,
            model,
        )?;
        let delta = (src(hp)? - base(hp)?)?;
        let edit = if opts.freeze_mlps {
            Edit::Replace {
                mask: ones.squeeze(0)?,
                value: base(hp)?.broadcast_add(&delta.broadcast_mul(&m)?)?,
            }
        } else {
            Edit::Replace {
                mask: m,
                value: src(hp)?,
            }
        };
        spec = spec.intervene(hp, edit);
        spec = spec.capture(HookPoint::ResidPre(l));
        if !graph.parallel {
            spec = spec.capture(HookPoint::ResidMid(l));
        }
    }
    spec = spec.capture(HookPoint::ResidPost(graph.n_layers - 1));
    let out = resume_from_base(model, run, s0, rows, &spec, None)?;
    Ok(Step1 { cache: out.cache })
}

/// The base run's norm scales (`ln1`, `ln2` of every block and
/// `ln_final`, the last position only), for frozen LayerNorm.
fn base_scales(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
) -> CResult<crate::model::ActivationCache> {
    let mut spec = HookSpec::new().capture(HookPoint::LnFinalScale);
    for l in 0..graph.n_layers {
        spec = spec
            .capture(HookPoint::Ln1Scale(l))
            .capture(HookPoint::Ln2Scale(l));
    }
    Ok(resume_from_base(model, run, 0, 1, &spec, None)?.cache)
}

/// The edit that makes head receivers read `value` (`[rows, pos, d_model]`,
/// their step-1 input) through `ln1` with the base run's scale: their
/// projections' output at `hook_q`/`hook_k`/`hook_v`, on the heads `mask`
/// picks.
fn frozen_head_edit(
    model: &Transformer,
    layer: usize,
    port: Qkv,
    value: &Tensor,
    mask: Tensor,
    scales: &crate::model::ActivationCache,
) -> CResult<(HookPoint, Edit)> {
    let block = &model.blocks[layer];
    let scale = scales
        .get(HookPoint::Ln1Scale(layer))
        .expect("captured the base scales");
    let normed = block.ln1.forward_with_scale(value, scale)?;
    let (hp, proj, n) = match port {
        Qkv::Q => (HookPoint::Q(layer), &block.attn.q, model.cfg.n_heads),
        Qkv::K => (HookPoint::K(layer), &block.attn.k, model.cfg.n_kv_heads),
        Qkv::V => (HookPoint::V(layer), &block.attn.v, model.cfg.n_kv_heads),
    };
    let (rows, t, _) = value.dims3()?;
    let value = proj
        .forward(&normed)?
        .reshape((rows, t, n, model.cfg.d_head))?;
    Ok((hp, Edit::Replace { mask, value }))
}

fn step2(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    qs: &[&PathQuery],
    inputs: &Step1,
    frozen: Option<&crate::model::ActivationCache>,
) -> CResult<Vec<Metrics>> {
    let rows = qs.len();
    let dtype = model.dtype();
    let r0 = qs
        .iter()
        .flat_map(|q| q.receivers.iter())
        .map(|&r| graph.receiver_layer(r).min(graph.n_layers - 1))
        .min()
        .unwrap_or(0);
    let has = |b: usize, r: ReceiverId| qs[b].receivers.contains(&r);
    let mut spec = HookSpec::new();
    let all = (0..graph.n_receivers() as u32).map(ReceiverId);
    let named: Vec<ReceiverId> = all.filter(|&r| (0..rows).any(|b| has(b, r))).collect();
    // One edit per hook: the heads of one port of one layer share it.
    let mut done = std::collections::HashSet::new();
    for &r in &named {
        let (hp, heads) = receiver_hook(graph, r);
        if !done.insert(hp) {
            continue;
        }
        let value = inputs.input_of(graph, r).to_dtype(dtype)?;
        let (mask, value) = match (graph.receiver(r), heads) {
            (Receiver::Head { layer, port, .. }, Some((_, n))) => {
                let pick = |b: usize, h: usize| {
                    has(
                        b,
                        find_head(graph, layer, h, port).expect("a receiver of the graph"),
                    )
                };
                let mask = row_mask(rows, Some(n), pick, None, model)?;
                if let Some(scales) = frozen {
                    let (hp, edit) = frozen_head_edit(model, layer, port, &value, mask, scales)?;
                    spec = spec.intervene(hp, edit);
                    continue;
                }
                (mask, value.unsqueeze(2)?)
            }
            _ => (row_mask(rows, None, |b, _| has(b, r), None, model)?, value),
        };
        if let Some(scales) = frozen {
            // The MLP's or the final norm's scale, the base run's on these rows.
            let shp = match graph.receiver(r) {
                Receiver::Mlp { layer } => HookPoint::Ln2Scale(layer),
                _ => HookPoint::LnFinalScale,
            };
            let base = scales.get(shp).expect("captured the base scales").clone();
            spec = spec.intervene(
                shp,
                Edit::Replace {
                    mask: mask.clone(),
                    value: base,
                },
            );
        }
        spec = spec.intervene(hp, Edit::Replace { mask, value });
    }
    let logits = resume_from_base(model, run, r0, rows, &spec, None)?
        .logits
        .expect("logits");
    metrics::compute(
        &logits.to_dtype(DType::F32)?,
        &run.clean_logprobs,
        run.answer,
        run.wrong,
    )
}

/// The receiver of head `h`'s `port` in block `layer`.
fn find_head(graph: &Graph, layer: usize, h: usize, port: Qkv) -> Option<ReceiverId> {
    graph
        .receivers_of(layer)
        .map(|i| ReceiverId(i as u32))
        .find(|&r| {
            graph.receiver(r)
                == Receiver::Head {
                    layer,
                    head: h,
                    port,
                }
        })
}
