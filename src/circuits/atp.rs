//! AtP* (Kramár et al. 2024): attribution patching with its two fixes.
//!
//! The plain estimate is EAP's, `Δ_u · ∂metric/∂input_v`. It fails most
//! where the attention softmax saturates: a key or query input's change
//! can swing a pattern entry from 0 to 1 while the gradient through the
//! softmax says almost nothing moved. The fixes:
//!
//! - **QK fix.** For an edge into a head's query or key input, patch that
//!   input for real in the receiver's own block (from the base run's
//!   cached `resid_pre`; norms, rotary and q/k norms are the model's own),
//!   read the new attention pattern `A'` of the heads it feeds, and score
//!   `Σ (A' − A) ⊙ ∂metric/∂A`: the softmax is exact, only what follows
//!   the pattern is linearised. One batched row per sender and port serves
//!   every head of the block ([`qk_fix`]). Value, MLP and logits edges
//!   keep the plain estimate (nothing saturates before their gradient is
//!   taken).
//! - **GradDrop.** Cancellation between paths can hide an edge whose
//!   pieces are large. For each layer `ℓ` a backward pass with the
//!   gradient through block `ℓ`'s residual contribution (`hook_attn_out`,
//!   `hook_mlp_out`) dropped — those outputs replaced by their own values
//!   as constants, so the forward is unchanged — gives an estimate (QK
//!   fix included); GradDrop's score is `Σ_ℓ |estimate_ℓ| / (L − 1)`, a
//!   magnitude used to *rank* edges (the paper's AtP*), not a signed
//!   change.
//!
//! All gradients come from one batch of rows, a row per (dropped layer or
//! none) × distinct metric seed (metrics with equal seeds share a row;
//! `prob`'s is `logprob`'s scaled), run through forward and backward in
//! chunks of half the pass budget (the autograd graph holds every row's
//! activations), each row seeded with its metric's gradient, with zero
//! variables at every attention pattern and
//! at the receivers' cheap hooks (`hook_q`/`hook_k`/`hook_v`,
//! `hook_mlp_in`, the final residual), each head's input gradient then in
//! closed form as for EAP ([`super::grads`]): the per-head split norms of
//! `hook_q_input` & co. never enter the autograd graph.

use candle_core::{DType, Result as CResult, Tensor, Var};

use crate::model::{ActivationCache, Edit, ForwardOptions, HookPoint, HookSpec, Transformer};
use crate::patching::metrics::REGISTRY;
use crate::patching::runs::RunPair;

use super::eap::grad_metrics;
use super::grads::{self, ReceiverVars};
use super::graph::{Graph, Qkv, Receiver, ReceiverId, SenderId};
use super::runs::{base_and_source, base_start};
use super::seeds::{seed_groups, FromGroup};

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
/// reads it): key edges re-run the attention per (sender, position),
/// query edges read every position from one row per sender (each pattern
/// row depends on its own query alone; [`qk_fix`]).
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
    let nl = graph.n_layers;
    let groups = if graddrop { 1 + nl } else { 1 };
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
    let base = model.forward(Some(&tokens), &spec, &last)?;
    // One gradient row per distinct seed: metrics with equal seeds share
    // one, `prob` reads `logprob`'s scaled (see `seeds`).
    let base_logits = base.logits.expect("logits").to_dtype(DType::F32)?;
    let (seeds, from) = seed_groups(&base_logits, run, &ids)?;
    let base = base.cache;
    let n_s = seeds.len();
    let rows = groups * n_s;
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
    // Each block's pattern gradients, [rows, heads, pos·pos], by chunk.
    let mut pattern_grads: Vec<Vec<Tensor>> = vec![Vec::new(); nl];
    // The autograd graph keeps every activation of every row alive until
    // its backward: rows go through in chunks of half the pass budget.
    let chunk = (max_rows / 2).max(1);
    for r0 in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - r0);
        let pass = gradient_rows(
            model,
            graph,
            (&base, &embed_edit()?, &tokens),
            &seeds,
            (r0, n),
        )?;
        for (l, g) in pass.pattern_grads.into_iter().enumerate() {
            pattern_grads[l].push(g);
        }
        for l in 0..=nl {
            let recv = graph.receivers_of(l);
            let g = pass.vars.row_grads(model, &pass.resid_pre, &pass.raw, l)?; // [recv, n, t·d]
                                                                                // [positions, senders, recv × n]: per position, or summed over them.
            let est: Vec<Vec<Vec<f32>>> = if positions {
                let gp = g.reshape((recv.len() * n, t, d))?.transpose(0, 1)?;
                let dp = delta.transpose(0, 1)?.contiguous()?;
                dp.matmul(&gp.transpose(1, 2)?.contiguous()?)?.to_vec3()?
            } else {
                let g = g.reshape((recv.len() * n, t * d))?;
                vec![delta.reshape((ns, t * d))?.matmul(&g.t()?)?.to_vec2()?]
            };
            for (p, at_p) in est.into_iter().enumerate() {
                for (si, row) in at_p.into_iter().enumerate() {
                    for (j, v) in row.into_iter().enumerate() {
                        linear[r0 + j % n][at(si, recv.start + j / n, p)] = v;
                    }
                }
            }
        }
    }
    // QK fix: [rows of the gradient batch][unit], for q/k edges.
    let mut fix: Vec<Vec<f32>> = linear.clone();
    let h = graph.n_heads;
    for (l, ga) in pattern_grads.iter().enumerate() {
        let ga = Tensor::cat(ga, 0)?.reshape((rows, h, t * t))?;
        let a = base
            .get(HookPoint::Pattern(l))
            .expect("captured")
            .to_dtype(DType::F32)?
            .reshape((1, h, t * t))?;
        qk_fix(
            model,
            graph,
            run,
            &delta,
            l,
            (&a, &ga),
            (per, max_rows),
            |s, r, p, est| {
                for (k, v) in est.into_iter().enumerate() {
                    fix[k][at(s.0 as usize, r.0 as usize, p)] = v;
                }
            },
        )?;
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
    // Metric k reads its seed's row of each group, scaled.
    let plain = dense(&|k, i| from[k].scale * linear[from[k].group][i]);
    let fixed = dense(&|k, i| from[k].scale * fix[from[k].group][i]);
    let graddrop = graddrop.then(|| {
        let norm = (nl.max(2) - 1) as f32;
        dense(&|k, i| {
            let FromGroup { group, scale } = from[k];
            let sum: f32 = (1..groups).map(|g| fix[g * n_s + group][i].abs()).sum();
            scale.abs() * sum / norm
        })
    });
    Ok(AtpScores {
        plain,
        fixed,
        graddrop,
    })
}

/// What one chunk of AtP*'s gradient batch gives.
struct GradientRows {
    vars: ReceiverVars,
    /// The receivers' raw gradients ([`ReceiverVars::take`]).
    raw: Vec<Tensor>,
    /// Each block's input, one row (every row computes the same).
    resid_pre: Vec<Tensor>,
    /// Each block's pattern gradient, `[rows, heads, pos, pos]` (f32).
    pattern_grads: Vec<Tensor>,
}

/// Rows `r0..r0 + n` of AtP*'s gradient batch: row `r` is seeded with
/// `seeds[r % seeds.len()]` and, in group `r / seeds.len() = 1 + ℓ`, has
/// block `ℓ`'s residual outputs replaced by their own values (GradDrop).
/// Every row computes the same forward values (a dropped output is
/// replaced by itself), so each row's receiver gradients follow from its
/// `hook_q`/`hook_k`/`hook_v` gradients in closed form ([`grads`]) with
/// one row's norm statistics. `base` holds the base run's block outputs;
/// `tokens: [1, pos]`.
fn gradient_rows(
    model: &Transformer,
    graph: &Graph,
    (base, embed, tokens): (&ActivationCache, &Edit, &Tensor),
    seeds: &[Vec<f32>],
    (r0, n): (usize, usize),
) -> CResult<GradientRows> {
    let (dev, dtype) = (model.device(), model.dtype());
    let (nl, h, n_s) = (graph.n_layers, graph.n_heads, seeds.len());
    let t = tokens.dim(1)?;
    let mut spec = HookSpec::new().intervene(HookPoint::Embed, embed.clone());
    let mut pattern_vars = Vec::new();
    for l in 0..nl {
        let p = Var::zeros((n, h, t, t), dtype, dev)?;
        spec = spec.intervene(HookPoint::Pattern(l), Edit::Add(p.as_tensor().clone()));
        pattern_vars.push(p);
        let m: Vec<f32> = (r0..r0 + n).map(|r| f32::from(r / n_s == 1 + l)).collect();
        if m.iter().all(|&x| x == 0.0) {
            continue;
        }
        let mask = Tensor::from_vec(m, (n, 1, 1), dev)?.to_dtype(dtype)?;
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
    let (spec, vars) = ReceiverVars::attach(model, graph, spec, n, t)?;
    let batch = tokens.broadcast_as((n, t))?.contiguous()?;
    let last = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let out = model.forward(Some(&batch), &spec, &last)?;
    let resid_pre = grads::resid_pre(&out.cache, nl)?
        .into_iter()
        .map(|x| x.narrow(0, 0, 1))
        .collect::<CResult<Vec<_>>>()?;
    drop(out.cache);
    let logits = out.logits.expect("logits").to_dtype(DType::F32)?;
    let seed: Vec<f32> = (r0..r0 + n).flat_map(|r| seeds[r % n_s].clone()).collect();
    let seed = Tensor::from_vec(seed, logits.shape(), dev)?;
    let grads = (&logits * seed)?.sum_all()?.backward()?;
    let raw = vars.take(&grads)?;
    let pattern_grads = pattern_vars
        .iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32),
            None => v.as_tensor().zeros_like()?.to_dtype(DType::F32),
        })
        .collect::<CResult<Vec<_>>>()?;
    Ok(GradientRows {
        vars,
        raw,
        resid_pre,
        pattern_grads,
    })
}

/// The QK fix of every query and key edge into block `l`: `put(sender,
/// receiver, position, estimates)` with one estimate per gradient row,
/// `Σ (A' − A) ⊙ ∂objective/∂A` over the heads the receiver feeds.
///
/// A head's pattern depends only on its own queries and keys, so one
/// pass row per (sender, port[, position]) serves every head of the
/// block: the row adds `Δ_s` to the query input of *all* heads (or the
/// key input of all KV heads), and head `h`'s pattern in that row is the
/// one with edge `s → a{l}.h{h}<q>` patched (a KV head's keys reach each
/// query head of its group). That is `n_heads` times fewer rows than one
/// per edge; `tests::one_row_per_sender_equals_one_per_edge` checks the
/// two agree.
///
/// # Shapes
/// `delta: [senders, pos, d_model]`, `a: [1, heads, pos·pos]` (the base
/// pattern), `ga: [gradient rows, heads, pos·pos]`
#[allow(clippy::too_many_arguments)]
fn qk_fix(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    delta: &Tensor,
    l: usize,
    (a, ga): (&Tensor, &Tensor),
    (per, max_rows): (usize, usize),
    mut put: impl FnMut(SenderId, ReceiverId, usize, Vec<f32>),
) -> CResult<()> {
    let (h, hkv) = (graph.n_heads, graph.n_kv_heads);
    let group = h / hkv;
    let t = delta.dim(1)?;
    let n_rows = ga.dim(0)?;
    // [heads, pos·pos, gradient rows]
    let ga_h = ga.permute((1, 2, 0))?.contiguous()?;
    for port in [Qkv::Q, Qkv::K] {
        let recv: Vec<ReceiverId> = graph
            .receivers_of(l)
            .map(|r| ReceiverId(r as u32))
            .filter(|&r| matches!(graph.receiver(r), Receiver::Head { port: p, .. } if p == port))
            .collect();
        // Senders whose edges into this port exist (all of them or none,
        // per sender: every head of a block reads the same stream).
        let senders: Vec<SenderId> = (0..graph.senders_before(l) as u32)
            .map(SenderId)
            .filter(|&s| recv.first().is_some_and(|&r| graph.is_edge(s, r)))
            .collect();
        // Row p of a pattern depends on the query at p alone (and every
        // key): a row patching the queries at every position holds, in
        // each pattern row p, the pattern with the query at p patched. So
        // per-position query edges need no row per position; key edges
        // (a key at p moves every row's softmax) do.
        let by_query = port == Qkv::Q && per > 1;
        let units: Vec<(SenderId, usize)> = match by_query {
            true => senders.iter().map(|&s| (s, 0)).collect(),
            false => senders
                .iter()
                .flat_map(|&s| (0..per).map(move |p| (s, p)))
                .collect(),
        };
        let at_position = per > 1 && !by_query;
        // Per (head, query position): [heads·pos, keys, gradient rows].
        let ga_q = match by_query {
            true => Some(
                ga.reshape((n_rows, h, t, t))?
                    .permute((1, 2, 3, 0))?
                    .contiguous()?
                    .reshape((h * t, t, n_rows))?,
            ),
            false => None,
        };
        for chunk in units.chunks(max_rows.max(1)) {
            let n = chunk.len();
            let patterns = all_head_patterns(model, run, delta, l, port, (chunk, at_position))?;
            let da = patterns.reshape((n, h, t * t))?.broadcast_sub(a)?;
            // Query receivers are query heads; key receivers KV heads,
            // whose change reaches their group's heads.
            let heads = |j: usize| match port {
                Qkv::Q => j..j + 1,
                _ => j * group..(j + 1) * group,
            };
            if let Some(ga_q) = &ga_q {
                // [heads·pos, rows, keys] × [heads·pos, keys, gradient rows]
                let da = da
                    .reshape((n, h, t, t))?
                    .permute((1, 2, 0, 3))?
                    .contiguous()?
                    .reshape((h * t, n, t))?;
                let est: Vec<Vec<Vec<f32>>> = da.matmul(ga_q)?.to_vec3()?;
                for (row, &(s, _)) in chunk.iter().enumerate() {
                    for (j, &r) in recv.iter().enumerate() {
                        for p in 0..t {
                            let v = (0..n_rows)
                                .map(|k| heads(j).map(|hh| est[hh * t + p][row][k]).sum())
                                .collect();
                            put(s, r, p, v);
                        }
                    }
                }
                continue;
            }
            // [heads, rows, pos·pos] × [heads, pos·pos, gradient rows]
            let da = da.transpose(0, 1)?.contiguous()?;
            let est: Vec<Vec<Vec<f32>>> = da.matmul(&ga_h)?.to_vec3()?;
            for (row, &(s, p)) in chunk.iter().enumerate() {
                for (j, &r) in recv.iter().enumerate() {
                    let v = (0..n_rows)
                        .map(|k| heads(j).map(|hh| est[hh][row][k]).sum())
                        .collect();
                    put(s, r, p, v);
                }
            }
        }
    }
    Ok(())
}

/// Attention patterns of block `l` with each row's sender change added to
/// the query input (or key input) of every head, at the row's position
/// only when `at_position`.
///
/// # Shapes
/// `delta: [senders, pos, d_model]`; returns `[rows, heads, pos, pos]` (f32)
fn all_head_patterns(
    model: &Transformer,
    run: &RunPair,
    delta: &Tensor,
    l: usize,
    port: Qkv,
    (chunk, at_position): (&[(SenderId, usize)], bool),
) -> CResult<Tensor> {
    let (dev, dtype) = (model.device(), model.dtype());
    let t = delta.dim(1)?;
    let rows = chunk
        .iter()
        .map(|&(s, p)| {
            let du = delta.get(s.0 as usize)?;
            if !at_position {
                return Ok(du);
            }
            let mut onehot = vec![0f32; t];
            onehot[p] = 1.0;
            du.broadcast_mul(&Tensor::from_vec(onehot, (t, 1), dev)?)
        })
        .collect::<CResult<Vec<_>>>()?;
    // [rows, pos, 1, d_model]: the same change for every head.
    let edit = Tensor::stack(&rows, 0)?.unsqueeze(2)?.to_dtype(dtype)?;
    let hook = match port {
        Qkv::Q => HookPoint::QInput(l),
        _ => HookPoint::KInput(l),
    };
    let spec = HookSpec::new()
        .intervene(hook, Edit::Add(edit))
        .capture(HookPoint::Pattern(l));
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

#[cfg(test)]
mod tests {
    //! One row per sender and port (every head patched at once) against
    //! one row per edge (the receiver's head alone, at its split-input
    //! hook): the same QK-fix estimates, on GPT-2 and grouped-query Llama.
    use std::collections::HashMap;

    use candle_core::{Device, Tensor};

    use super::{base_and_source, base_start, qk_fix};
    use crate::circuits::graph::{Qkv, Receiver, ReceiverId, SenderId};
    use crate::circuits::runs::{self, edge_row_edits};
    use crate::model::{ForwardOptions, HookPoint, HookSpec};

    #[test]
    fn one_row_per_sender_equals_one_per_edge() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let (m, g, built) =
                runs::test_runs(preset, (&[3, 17, 9, 250, 4, 11], &[3, 40, 9, 251, 4, 11]));
            let run = &built.runs[0];
            let (b, s) = base_and_source(&g, run).unwrap();
            let delta = (s - b).unwrap();
            let (t, h) = (run.base_tokens.len(), g.n_heads);
            // Block `l`'s pattern, one row from the base run's input,
            // with `spec`'s edits: [1, heads · pos · pos].
            let pattern = |l: usize, spec: HookSpec| {
                let opts = ForwardOptions {
                    start: Some(base_start(&m, run, l, 1).unwrap()),
                    stop_before_layer: Some(l + 1),
                    pattern_only: true,
                    ..Default::default()
                };
                let spec = spec.capture(HookPoint::Pattern(l));
                let out = m.forward(None, &spec, &opts).unwrap();
                let a = out.cache.get(HookPoint::Pattern(l)).unwrap();
                a.reshape((1, h * t * t)).unwrap()
            };
            for per in [1, t] {
                for l in 0..g.n_layers {
                    // The base pattern: the per-edge rows' other heads
                    // keep it, so they add nothing.
                    let a = pattern(l, HookSpec::new());
                    let a = a.reshape((1, h, t * t)).unwrap();
                    let ga = Tensor::randn(0f32, 1.0, (2, h, t * t), &Device::Cpu).unwrap();
                    let mut got = HashMap::new();
                    qk_fix(&m, &g, run, &delta, l, (&a, &ga), (per, 5), |s, r, p, v| {
                        assert!(got.insert((s, r, p), v).is_none());
                    })
                    .unwrap();
                    let edges: Vec<(SenderId, ReceiverId)> = g
                        .edges()
                        .into_iter()
                        .filter(|&(_, r)| {
                            matches!(
                                g.receiver(r),
                                Receiver::Head { layer, port: Qkv::Q | Qkv::K, .. } if layer == l
                            )
                        })
                        .collect();
                    assert_eq!(got.len(), edges.len() * per, "{preset} block {l}");
                    for &(s, r) in &edges {
                        for p in 0..per {
                            let at = [p];
                            let at = (per > 1).then_some(&at[..]);
                            let spec = HookSpec::new();
                            let spec =
                                edge_row_edits(&m, &g, &delta, (&[(s, r)], at), spec).unwrap();
                            let da = pattern(l, spec)
                                .broadcast_sub(&a.reshape((1, h * t * t)).unwrap())
                                .unwrap();
                            let want: Vec<f32> = da
                                .matmul(&ga.reshape((2, h * t * t)).unwrap().t().unwrap())
                                .unwrap()
                                .flatten_all()
                                .unwrap()
                                .to_vec1()
                                .unwrap();
                            let have = &got[&(s, r, p)];
                            for (x, y) in have.iter().zip(&want) {
                                assert!(
                                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                                    "{preset} {s:?} -> {r:?} @{p}: {x} vs {y}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
