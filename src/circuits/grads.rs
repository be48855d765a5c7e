//! The gradient of an objective with respect to every receiver's input,
//! read from a backward pass with zero variables at cheap hooks.
//!
//! A head's query, key or value input (`hook_q_input` & co.) is its own
//! copy of the residual stream, normalised by `ln1` and projected by that
//! head's columns of `W_Q`/`W_K`/`W_V`. Putting the variable there makes
//! the forward split `ln1` per head (a `[rows, pos, heads, d_model]`
//! tensor per port and layer) and keeps every intermediate of those
//! per-head norms alive for the backward: gigabytes on gpt2-small, and
//! most of the time. Instead the variable sits at the projection's output
//! (`hook_q`/`hook_k`/`hook_v`, `[rows, pos, heads, d_head]`, before q/k
//! norms and rotary, which the autograd graph covers), the forward is the
//! model's ordinary one, and the head's input gradient follows in closed
//! form: `g_in = ln1ᵀ(g_q · W_hᵀ)`, with the norm's backward written out
//! ([`head_input_grads`]) at the block's input `resid_pre`. Mathematically
//! the gradient at the split-input hook; numerically equal up to rounding.
//!
//! MLP inputs (`hook_mlp_in`) and the final residual (the logits receiver)
//! keep their variables where the receiver reads.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result as CResult, Tensor, Var, D};

use crate::model::config::NormKind;
use crate::model::layers::Norm;
use crate::model::{ActivationCache, Edit, HookPoint, HookSpec, Transformer};

use super::graph::Graph;

/// Zero variables at the hooks every receiver's gradient is read from.
pub(crate) struct ReceiverVars {
    /// In graph receiver order: per layer `hook_q`, `hook_k`, `hook_v`,
    /// `hook_mlp_in`; then the final residual. With each var's head count
    /// (1 for head-less hooks).
    vars: Vec<(HookPoint, usize, Var)>,
    rows: usize,
    t: usize,
}

impl ReceiverVars {
    /// Adds the variables (and captures of each block's `resid_pre`, the
    /// norm's input) to `spec`, for a batch of `rows` rows of `t` positions.
    pub(crate) fn attach(
        model: &Transformer,
        graph: &Graph,
        mut spec: HookSpec,
        rows: usize,
        t: usize,
    ) -> CResult<(HookSpec, Self)> {
        let (dev, dtype) = (model.device(), model.dtype());
        let (d, dh) = (model.cfg.d_model, model.cfg.d_head);
        let (h, hkv) = (graph.n_heads, graph.n_kv_heads);
        let mut vars = Vec::new();
        for l in 0..graph.n_layers {
            for (hp, n) in [
                (HookPoint::Q(l), h),
                (HookPoint::K(l), hkv),
                (HookPoint::V(l), hkv),
            ] {
                let v = Var::zeros((rows, t, n, dh), dtype, dev)?;
                spec = spec.intervene(hp, Edit::Add(v.as_tensor().clone()));
                vars.push((hp, n, v));
            }
            let v = Var::zeros((rows, t, d), dtype, dev)?;
            spec = spec.intervene(HookPoint::MlpIn(l), Edit::Add(v.as_tensor().clone()));
            vars.push((HookPoint::MlpIn(l), 1, v));
            spec = spec.capture(HookPoint::ResidPre(l));
        }
        let last = HookPoint::ResidPost(graph.n_layers - 1);
        let v = Var::zeros((rows, t, d), dtype, dev)?;
        spec = spec.intervene(last, Edit::Add(v.as_tensor().clone()));
        vars.push((last, 1, v));
        Ok((spec, ReceiverVars { vars, rows, t }))
    }

    /// The raw gradients of one backward, per variable (f32; zeros where
    /// the objective does not depend on it).
    pub(crate) fn take(&self, grads: &GradStore) -> CResult<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|(_, _, v)| match grads.get(v.as_tensor()) {
                Some(g) => g.to_dtype(DType::F32),
                None => v.as_tensor().zeros_like()?.to_dtype(DType::F32),
            })
            .collect()
    }

    /// Receiver-input gradients of block `l`'s receivers (`l = n_layers`:
    /// the logits) from raw gradients of `groups` backward passes, each
    /// stacked group-major (`[groups · rows, ..]` per variable, as
    /// [`Self::take`] gives them, concatenated), averaged over the `rows`
    /// of each group. `resid_pre[l]` is block `l`'s input in the forward.
    ///
    /// # Shapes
    /// returns `[receivers of l, groups, pos · d_model]` (f32)
    pub(crate) fn block_grads(
        &self,
        model: &Transformer,
        resid_pre: &[Tensor],
        raw: &[Tensor],
        groups: usize,
        l: usize,
    ) -> CResult<Tensor> {
        let (rows, t, d) = (self.rows, self.t, model.cfg.d_model);
        let range = if l < model.cfg.n_layers {
            4 * l..4 * l + 4
        } else {
            self.vars.len() - 1..self.vars.len()
        };
        let mut per = Vec::with_capacity(4);
        for i in range {
            let ((hp, n, _), g) = (&self.vars[i], &raw[i]);
            let g = match hp {
                HookPoint::Q(_) | HookPoint::K(_) | HookPoint::V(_) => {
                    let block = &model.blocks[l];
                    let proj = match hp {
                        HookPoint::Q(_) => &block.attn.q,
                        HookPoint::K(_) => &block.attn.k,
                        _ => &block.attn.v,
                    };
                    let g = g.reshape((groups, rows, t, *n, g.dim(3)?))?;
                    head_input_grads(&g, &proj.w.to_dense()?, &block.ln1, &resid_pre[l])?
                }
                _ => g.reshape((groups, rows, t * d))?.mean(1)?.unsqueeze(0)?,
            };
            per.push(g);
        }
        Tensor::cat(&per, 0)
    }

    /// [`Self::block_grads`] of one backward with every row its own group
    /// (nothing averaged): for a batch whose rows all compute the same
    /// forward values and differ only in their seed or in where the
    /// gradient is cut (AtP*'s metric × GradDrop rows). `resid_pre[l]`
    /// is then one row's block input, `[1, pos, d_model]`.
    ///
    /// # Shapes
    /// returns `[receivers of l, rows, pos · d_model]` (f32)
    pub(crate) fn row_grads(
        &self,
        model: &Transformer,
        resid_pre: &[Tensor],
        raw: &[Tensor],
        l: usize,
    ) -> CResult<Tensor> {
        let one = ReceiverVars {
            vars: self.vars.clone(),
            rows: 1,
            t: self.t,
        };
        one.block_grads(model, resid_pre, raw, self.rows, l)
    }
}

/// Each block's input `resid_pre` as the forward computed it, detached
/// from the autograd graph (so the graph can go once the backward passes
/// are done).
pub(crate) fn resid_pre(cache: &ActivationCache, n_layers: usize) -> CResult<Vec<Tensor>> {
    (0..n_layers)
        .map(|l| {
            let hp = HookPoint::ResidPre(l);
            cache
                .get(hp)
                .map(|x| x.detach())
                .ok_or_else(|| candle_core::Error::Msg(format!("forward did not capture {hp}")))
        })
        .collect()
}

/// Each head's split-input gradient, averaged over rows, from gradients
/// at its projection's output.
///
/// The head's input `x` goes through the norm (`n̂ = (x − μ)·s`, `s` the
/// inverse scale, then `⊙ w`) and the head's columns `W_h`: with `dn =
/// (g W_hᵀ) ⊙ w` the norm's backward is `dx = s · (dn − mean(dn) − n̂ ·
/// mean(dn ⊙ n̂))` (RMSNorm: no `mean(dn)` term, and `μ = 0`). Both means
/// are small dot products, `g · (w W_h) / d` and `g · ((n̂ ⊙ w) W_h) / d`,
/// so only two products reach full size: `(mean_rows s·g) W_hᵀ ⊙ w` and
/// the correction along `n̂` (and the ones), itself a product over rows:
/// rows are averaged before anything is `d_model` wide per head.
///
/// # Shapes
/// `g: [groups, rows, t, n, d_head]`, `w: [d_model, n · d_head]`,
/// `x: [rows, t, d_model]` (the norm's input) -> `[n, groups, t · d_model]`
fn head_input_grads(g: &Tensor, w: &Tensor, norm: &Norm, x: &Tensor) -> CResult<Tensor> {
    let (groups, rows, t, n, dh) = g.dims5()?;
    let d = w.dim(0)?;
    let layer_norm = norm.kind == NormKind::LayerNorm;
    let w = w.to_dtype(DType::F32)?;
    let scale = norm.w.to_dtype(DType::F32)?;
    // The norm's statistics: n̂ [rows, t, d], s [rows, t, 1].
    let x = x.to_dtype(DType::F32)?;
    let xc = if layer_norm {
        x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?
    } else {
        x
    };
    let s = (xc.sqr()?.mean_keepdim(D::Minus1)? + norm.eps)?
        .sqrt()?
        .recip()?;
    let nhat = xc.broadcast_mul(&s)?;
    let s4 = s.reshape((1, rows, t, 1))?;
    // (n̂ ⊙ w) W per head: [1, rows, t, n, dh].
    let q = nhat
        .broadcast_mul(&scale)?
        .reshape((rows * t, d))?
        .matmul(&w)?
        .reshape((1, rows, t, n, dh))?;
    // (mean_rows s·g) W_hᵀ ⊙ w: [n, groups·t, d].
    let gs = g
        .broadcast_mul(&s4.unsqueeze(4)?)?
        .mean(1)? // [groups, t, n, dh]
        .permute((2, 0, 1, 3))?
        .contiguous()?
        .reshape((n, groups * t, dh))?;
    let wt = w.reshape((d, n, dh))?.permute((1, 2, 0))?; // [n, dh, d]
                                                         // The CPU product reads W_hᵀ in place; other backends want it laid out.
    let wt = if wt.device().is_cpu() {
        wt
    } else {
        wt.contiguous()?
    };
    let dn = gs.matmul(&wt)?.broadcast_mul(&scale)?;
    // Per (group, row, t, head) the weight of that row's n̂ in the
    // average: s · mean(dn ⊙ n̂) / rows.
    let beta =
        (g.broadcast_mul(&q)?.sum(D::Minus1)? * (1.0 / (d * rows) as f64))?.broadcast_mul(&s4)?; // [groups, rows, t, n]
                                                                                                 // The correction per position: [t, n·groups, rows (+1)] × [t, rows (+1), d].
    let mut coef = beta.permute((2, 3, 0, 1))?.reshape((t, n * groups, rows))?;
    let mut basis = nhat.transpose(0, 1)?; // [t, rows, d]
    if layer_norm {
        // mean_rows s · mean(dn), the weight of the ones.
        let colsum = scale.unsqueeze(0)?.matmul(&w)?.reshape((1, 1, 1, n, dh))?;
        let alpha = (g.broadcast_mul(&colsum)?.sum(D::Minus1)? * (1.0 / d as f64))?
            .broadcast_mul(&s4)?
            .mean(1)?; // [groups, t, n]
        let alpha = alpha.permute((1, 2, 0))?.reshape((t, n * groups, 1))?;
        let ones = Tensor::ones((t, 1, d), DType::F32, g.device())?;
        coef = Tensor::cat(&[&coef, &alpha], 2)?;
        basis = Tensor::cat(&[&basis, &ones], 1)?;
    }
    let corr = coef
        .contiguous()?
        .matmul(&basis.contiguous()?)? // [t, n·groups, d]
        .reshape((t, n, groups, d))?
        .permute((1, 2, 0, 3))?; // [n, groups, t, d]
    (dn.reshape((n, groups, t, d))? - corr)?.reshape((n, groups, t * d))
}

#[cfg(test)]
mod tests {
    //! The closed form equals the gradient at the split-input hooks
    //! themselves (variables at `hook_q_input` & co., the autograd route).
    use candle_core::{DType, Device, Tensor, Var};

    use super::{Graph, ReceiverVars};
    use crate::model::random::{preset_config, random_weights};
    use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};

    fn split_input_grads(m: &Transformer, g: &Graph, tokens: &Tensor, seed: &Tensor) -> Tensor {
        let (rows, t) = tokens.dims2().unwrap();
        let d = m.cfg.d_model;
        let mut spec = HookSpec::new();
        let mut vars = Vec::new();
        for l in 0..g.n_layers {
            for (hp, n) in [
                (HookPoint::QInput(l), Some(g.n_heads)),
                (HookPoint::KInput(l), Some(g.n_kv_heads)),
                (HookPoint::VInput(l), Some(g.n_kv_heads)),
                (HookPoint::MlpIn(l), None),
            ] {
                let v = match n {
                    Some(n) => Var::zeros((rows, t, n, d), DType::F32, &Device::Cpu),
                    None => Var::zeros((rows, t, d), DType::F32, &Device::Cpu),
                }
                .unwrap();
                spec = spec.intervene(hp, Edit::Add(v.as_tensor().clone()));
                vars.push((n.unwrap_or(1), v));
            }
        }
        let v = Var::zeros((rows, t, d), DType::F32, &Device::Cpu).unwrap();
        let last = HookPoint::ResidPost(g.n_layers - 1);
        spec = spec.intervene(last, Edit::Add(v.as_tensor().clone()));
        vars.push((1, v));
        let logits = m
            .forward(Some(tokens), &spec, &ForwardOptions::default())
            .unwrap()
            .logits
            .unwrap();
        let grads = (logits * seed)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let per: Vec<Tensor> = vars
            .iter()
            .map(|(n, v)| {
                let gr = grads.get(v.as_tensor()).unwrap();
                gr.reshape((rows, t, *n, d))
                    .unwrap()
                    .mean(0)
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap()
                    .reshape((*n, 1, t * d))
                    .unwrap()
            })
            .collect();
        Tensor::cat(&per, 0).unwrap()
    }

    #[test]
    fn receiver_gradients_equal_the_split_input_gradients() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let cfg = preset_config(preset).unwrap();
            let w = random_weights(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
            let m = Transformer::new(cfg, w).unwrap();
            let g = Graph::new(&m.cfg);
            let tokens =
                Tensor::new(&[[3u32, 17, 9, 25, 4], [5, 1, 9, 60, 2]], &Device::Cpu).unwrap();
            let logits_shape = (2, 5, m.cfg.d_vocab);
            let seed = Tensor::randn(0f32, 1.0, logits_shape, &Device::Cpu).unwrap();
            let want = split_input_grads(&m, &g, &tokens, &seed);
            let (spec, vars) = ReceiverVars::attach(&m, &g, HookSpec::new(), 2, 5).unwrap();
            let out = m
                .forward(Some(&tokens), &spec, &ForwardOptions::default())
                .unwrap();
            let logits = out.logits.unwrap();
            let grads = (logits * &seed)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let raw = vars.take(&grads).unwrap();
            let x = super::resid_pre(&out.cache, g.n_layers).unwrap();
            let per: Vec<Tensor> = (0..=g.n_layers)
                .map(|l| vars.block_grads(&m, &x, &raw, 1, l).unwrap())
                .collect();
            let got = Tensor::cat(&per, 0).unwrap();
            assert_eq!(got.dims(), want.dims());
            let scale = want.abs().unwrap().max_keepdim(2).unwrap();
            let err = (got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(2)
                .unwrap();
            let (err, scale): (Vec<f32>, Vec<f32>) = (
                err.flatten_all().unwrap().to_vec1().unwrap(),
                scale.flatten_all().unwrap().to_vec1().unwrap(),
            );
            // Every receiver's gradient is there, to rounding.
            for (r, (e, s)) in err.iter().zip(&scale).enumerate() {
                assert!(*s > 0.0, "{preset}: receiver {r} has no gradient");
                assert!(
                    e / s < 1e-4,
                    "{preset}: receiver {r} off by {e} (scale {s})"
                );
            }
        }
    }
}
