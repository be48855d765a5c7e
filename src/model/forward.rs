//! The canonical transformer and its one forward pass.
//!
//! Every family runs through this code; `ModelConfig` says what varies. The
//! pass is written with plain, gradient-carrying tensor ops (no fused
//! softmax / norm kernels, which in candle silently drop gradients), so the
//! same code serves inference, attribution patching and training.
//!
//! Two options make patching sweeps fast without a second implementation:
//! - [`StartState`] begins at block `l` from a given residual stream, so a
//!   patch at layer `l` reuses the cached prefix of the network;
//! - with `pos_offset = p0` only positions `p0..T` are computed, their
//!   attention reading keys/values of positions `< p0` from a [`KvCache`] of
//!   the unpatched run (causal reuse: a patch at position `p` cannot change
//!   anything before `p`);
//! - with a [`Packing`], rows of different lengths share one pass along a
//!   single token axis (`layout.rs`), so no row computes positions it does
//!   not need.

use candle_core::{DType, Device, Result as CResult, Tensor};

use super::config::{ModelConfig, NormKind, Positions};
use super::hooks::{ActivationCache, HookPoint, HookSpec};
use super::layers::{activate, broadcast_rows, causal_mask, repeat_kv, softmax_last_dim};
pub use super::layers::{Attention, Block, Linear, Mlp, Norm};
use super::layout::Layout;
pub use super::layout::Packing;
use super::rotary::{Rotary, TokenPositions};
use super::weights::CanonicalWeights;
use super::ModelError;

/// Keys (after rotary) and values of every block for one run.
///
/// # Shapes
/// each layer: `k, v: [batch or 1, n_kv_heads, pos, d_head]`
#[derive(Debug, Clone)]
pub struct KvCache {
    pub layers: Vec<(Tensor, Tensor)>,
}

/// Where a partial forward pass starts.
pub struct StartState<'a> {
    /// First block to run.
    pub layer: usize,
    /// `blocks.{layer}.hook_resid_pre` for positions `pos_offset..T`,
    /// `[batch or 1, T - pos_offset, d_model]`.
    pub resid: Tensor,
    /// First computed position; positions before it come from `past`.
    pub pos_offset: usize,
    /// Keys and values of the unpatched run, required when `pos_offset > 0`.
    pub past: Option<&'a KvCache>,
    /// Rows in the batch (the resid may be broadcast from one row).
    pub batch: usize,
    /// Packed rows instead of a dense `[batch, T - pos_offset]` block; then
    /// `resid` is `[1, n_tokens, d_model]` and `pos_offset` is ignored.
    pub packing: Option<&'a Packing>,
}

#[derive(Default)]
pub struct ForwardOptions<'a> {
    pub start: Option<StartState<'a>>,
    /// Unembed only the last position: logits `[batch, d_vocab]`.
    pub last_pos_only: bool,
    /// Return keys/values of every block (for later causal reuse).
    pub return_kv: bool,
    /// Stop before this block and return its `resid_pre` instead of logits.
    pub stop_before_layer: Option<usize>,
}

pub struct ForwardOutput {
    /// `[batch, pos, d_vocab]`, or `[batch, d_vocab]` with `last_pos_only`;
    /// `None` when the pass stopped early.
    pub logits: Option<Tensor>,
    pub cache: ActivationCache,
    pub kv: Option<KvCache>,
    /// The residual where the pass stopped (with `stop_before_layer`).
    pub resid: Option<Tensor>,
}

/// The canonical decoder-only transformer.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub cfg: ModelConfig,
    /// `[d_vocab, d_model]`
    pub w_e: Tensor,
    /// `[n_ctx, d_model]`
    pub w_pos: Option<Tensor>,
    pub blocks: Vec<Block>,
    pub ln_final: Norm,
    /// `[d_model, d_vocab]` (a transposed view of `w_e` when tied)
    pub w_u: Tensor,
    pub b_u: Option<Tensor>,
    rotary: Option<Rotary>,
    device: Device,
}

impl Transformer {
    /// Builds the model from canonical weights; every tensor is checked
    /// against the config's shapes, and unused tensors are an error.
    pub fn new(cfg: ModelConfig, mut w: CanonicalWeights) -> Result<Self, ModelError> {
        cfg.validate().map_err(|m| ModelError::BadConfig {
            origin: w.origin.clone(),
            message: m,
        })?;
        let (d, dh, h, hkv, dm) = (
            cfg.d_model,
            cfg.d_head,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_mlp,
        );
        let w_e = w.take("embed.W_E", &[cfg.d_vocab, d])?;
        let device = w_e.device().clone();
        let w_pos = match cfg.positions {
            Positions::Learned => Some(w.take("pos_embed.W_pos", &[cfg.n_ctx, d])?),
            Positions::Rotary(_) => None,
        };
        let norm = |w: &mut CanonicalWeights, p: &str| -> Result<Norm, ModelError> {
            let weight = w.take(&format!("{p}.w"), &[d])?;
            let weight = if cfg.norm_weight_offset != 0.0 {
                (weight + cfg.norm_weight_offset as f64)?
            } else {
                weight
            };
            let b = match cfg.norm {
                NormKind::LayerNorm => w.take_opt(&format!("{p}.b"), &[d])?,
                NormKind::RmsNorm => None,
            };
            Ok(Norm {
                kind: cfg.norm,
                w: weight,
                b,
                eps: cfg.norm_eps,
            })
        };
        let linear = |w: &mut CanonicalWeights, wn: &str, bn: &str, i: usize, o: usize| {
            Ok::<_, ModelError>(Linear {
                w: w.take(wn, &[i, o])?,
                b: w.take_opt(bn, &[o])?,
            })
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let p = format!("blocks.{l}");
            let a = format!("{p}.attn");
            let m = format!("{p}.mlp");
            let attn = Attention {
                q: linear(&mut w, &format!("{a}.W_Q"), &format!("{a}.b_Q"), d, h * dh)?,
                k: linear(
                    &mut w,
                    &format!("{a}.W_K"),
                    &format!("{a}.b_K"),
                    d,
                    hkv * dh,
                )?,
                v: linear(
                    &mut w,
                    &format!("{a}.W_V"),
                    &format!("{a}.b_V"),
                    d,
                    hkv * dh,
                )?,
                o: linear(&mut w, &format!("{a}.W_O"), &format!("{a}.b_O"), h * dh, d)?,
            };
            let mlp = Mlp {
                w_in: linear(&mut w, &format!("{m}.W_in"), &format!("{m}.b_in"), d, dm)?,
                w_gate: if cfg.gated_mlp {
                    Some(Linear {
                        w: w.take(&format!("{m}.W_gate"), &[d, dm])?,
                        b: w.take_opt(&format!("{m}.b_gate"), &[dm])?,
                    })
                } else {
                    None
                },
                w_out: linear(&mut w, &format!("{m}.W_out"), &format!("{m}.b_out"), dm, d)?,
            };
            blocks.push(Block {
                ln1: norm(&mut w, &format!("{p}.ln1"))?,
                ln2: norm(&mut w, &format!("{p}.ln2"))?,
                attn,
                mlp,
            });
        }
        let ln_final = norm(&mut w, "ln_final")?;
        let (w_u, b_u) = if cfg.tied_unembed {
            (w_e.t()?, w.take_opt("unembed.b_U", &[cfg.d_vocab])?)
        } else {
            (
                w.take("unembed.W_U", &[d, cfg.d_vocab])?,
                w.take_opt("unembed.b_U", &[cfg.d_vocab])?,
            )
        };
        let left = w.leftover();
        if !left.is_empty() {
            return Err(ModelError::UnusedTensors {
                origin: w.origin.clone(),
                names: left,
            });
        }
        let rotary = match &cfg.positions {
            Positions::Rotary(r) => Some(Rotary::new(r, cfg.n_ctx, w_e.dtype(), &device)?),
            Positions::Learned => None,
        };
        Ok(Self {
            cfg,
            w_e,
            w_pos,
            blocks,
            ln_final,
            w_u,
            b_u,
            rotary,
            device,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.w_e.dtype()
    }

    /// Runs the model.
    ///
    /// # Shapes
    /// `tokens: [batch, T]` (u32), required unless `opts.start` is given.
    /// Logits are `[batch, T - pos_offset, d_vocab]`, or `[batch, d_vocab]`
    /// with `last_pos_only`.
    pub fn forward(
        &self,
        tokens: Option<&Tensor>,
        hooks: &HookSpec,
        opts: &ForwardOptions<'_>,
    ) -> CResult<ForwardOutput> {
        let mut cache = ActivationCache::default();
        let cfg = &self.cfg;
        let dtype = self.dtype();
        let (mut x, first_layer, layout) = match &opts.start {
            Some(s) => {
                let (layout, rows) = match s.packing {
                    Some(pk) => (self.packed_layout(pk, s.past, dtype)?, 1),
                    None => (self.dense_layout(s, dtype)?, s.batch),
                };
                let resid = if s.resid.dim(0)? != rows {
                    s.resid
                        .broadcast_as((rows, s.resid.dim(1)?, s.resid.dim(2)?))?
                } else {
                    s.resid.clone()
                };
                (resid, s.layer, layout)
            }
            None => {
                let tokens = tokens.ok_or_else(|| {
                    candle_core::Error::Msg("forward needs tokens or a start state".into())
                })?;
                let t = tokens.dim(1)?;
                if t > cfg.n_ctx {
                    candle_core::bail!("{t} positions exceed the model's context of {}", cfg.n_ctx);
                }
                let layout = Layout {
                    hook_offset: 0,
                    hook_total: t,
                    positions: TokenPositions::Range(0),
                    mask: causal_mask(t, 0, dtype, &self.device)?,
                    past: None,
                    last_tokens: None,
                    last_pos: t - 1,
                };
                (self.embed(tokens, hooks, &mut cache)?, 0, layout)
            }
        };
        let (batch, t_local, _) = x.dims3()?;
        let (p0, n_pos) = (layout.hook_offset, layout.hook_total);
        let last = opts
            .stop_before_layer
            .unwrap_or(cfg.n_layers)
            .min(cfg.n_layers);
        let mut kv_out = Vec::new();
        let site = |h: HookPoint, t: Tensor, cache: &mut ActivationCache| {
            hooks.apply(h, t, p0, n_pos, cache)
        };
        let mut trimmed = false;
        for (l, block) in self.blocks.iter().enumerate().take(last).skip(first_layer) {
            x = site(HookPoint::ResidPre(l), x, &mut cache)?;
            let normed = block.ln1.forward(&x)?;
            if opts.last_pos_only && l + 1 == cfg.n_layers && !hooks.reads_past_kv(l) {
                let (out, kv) =
                    self.final_block_last_only(l, block, &x, &normed, &layout, hooks, &mut cache)?;
                if opts.return_kv {
                    kv_out.push(kv);
                }
                x = out;
                trimmed = true;
                break;
            }
            let (attn_out, kv) = self.attention(l, block, &normed, &layout, hooks, &mut cache)?;
            if opts.return_kv {
                kv_out.push(kv);
            }
            let attn_out = site(HookPoint::AttnOut(l), attn_out, &mut cache)?;
            x = if cfg.parallel_attn_mlp {
                let normed = block.ln2.forward(&x)?;
                let mlp_out = self.mlp(l, block, &normed, hooks, p0, n_pos, &mut cache)?;
                let mlp_out = site(HookPoint::MlpOut(l), mlp_out, &mut cache)?;
                (x + attn_out)?.add(&mlp_out)?
            } else {
                let mid = site(HookPoint::ResidMid(l), (x + attn_out)?, &mut cache)?;
                let normed = block.ln2.forward(&mid)?;
                let mlp_out = self.mlp(l, block, &normed, hooks, p0, n_pos, &mut cache)?;
                let mlp_out = site(HookPoint::MlpOut(l), mlp_out, &mut cache)?;
                (mid + mlp_out)?
            };
            x = site(HookPoint::ResidPost(l), x, &mut cache)?;
        }
        let kv = opts.return_kv.then_some(KvCache { layers: kv_out });
        if last < cfg.n_layers {
            return Ok(ForwardOutput {
                logits: None,
                cache,
                kv,
                resid: Some(x),
            });
        }
        // Rows whose logits are wanted: `[rows, 1, d_model]` for last-position logits.
        let (x, rows) = match (&layout.last_tokens, opts.last_pos_only) {
            // The final block already kept one token per row.
            _ if trimmed => {
                let rows = x.dim(0)? * x.dim(1)?;
                (x.reshape((rows, 1, cfg.d_model))?, rows)
            }
            (Some(idx), _) => (
                x.squeeze(0)?
                    .contiguous()?
                    .index_select(idx, 0)?
                    .unsqueeze(1)?,
                idx.dim(0)?,
            ),
            (None, true) => (x.narrow(1, t_local - 1, 1)?, batch),
            (None, false) => (x, batch),
        };
        let last_only = opts.last_pos_only || layout.last_tokens.is_some();
        let normed = self.ln_final.forward(&x)?;
        let normed = if layout.last_tokens.is_some() {
            // Packed rows: the hook sees one last token per row.
            hooks.apply(HookPoint::LnFinal, normed, 0, rows, &mut cache)?
        } else if last_only {
            // Only the last position is here; narrow full-length edits accordingly.
            hooks.apply(HookPoint::LnFinal, normed, n_pos - 1, n_pos, &mut cache)?
        } else {
            site(HookPoint::LnFinal, normed, &mut cache)?
        };
        let logits = self.unembed(&normed)?;
        let logits = if last_only {
            logits.reshape((rows, cfg.d_vocab))?
        } else {
            logits
        };
        Ok(ForwardOutput {
            logits: Some(logits),
            cache,
            kv,
            resid: None,
        })
    }

    /// Token (and learned position) embedding: `blocks.0.hook_resid_pre`'s input.
    fn embed(
        &self,
        tokens: &Tensor,
        hooks: &HookSpec,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let (batch, t) = tokens.dims2()?;
        let ids = tokens.flatten_all()?;
        let mut e = self
            .w_e
            .index_select(&ids, 0)?
            .reshape((batch, t, self.cfg.d_model))?;
        if let Some(s) = self.cfg.embed_scale {
            e = (e * s as f64)?;
        }
        let e = hooks.apply(HookPoint::Embed, e, 0, t, cache)?;
        match &self.w_pos {
            Some(w_pos) => {
                let p = w_pos.narrow(0, 0, t)?.unsqueeze(0)?;
                let p = if hooks.wants(HookPoint::PosEmbed) {
                    hooks.apply(
                        HookPoint::PosEmbed,
                        p.broadcast_as(e.shape())?.contiguous()?,
                        0,
                        t,
                        cache,
                    )?
                } else {
                    p
                };
                e.broadcast_add(&p)
            }
            None => Ok(e),
        }
    }

    /// Multiplies the final normalised residual by `W_U`.
    ///
    /// # Shapes
    /// `x: [.., d_model]` -> `[.., d_vocab]`
    pub fn unembed(&self, x: &Tensor) -> CResult<Tensor> {
        Linear {
            w: self.w_u.clone(),
            b: self.b_u.clone(),
        }
        .forward(x)
    }

    /// The final block when only last-position logits are wanted and no hook
    /// touches that block past its keys and values: keys and values are
    /// computed for every position (the last query attends to them), the
    /// query, attention output and MLP only for each row's last token.
    ///
    /// # Shapes
    /// returns `[batch, 1, d_model]` (dense) or `[1, rows, d_model]` (packed)
    #[allow(clippy::too_many_arguments)]
    fn final_block_last_only(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        normed: &Tensor,
        layout: &Layout<'_>,
        hooks: &HookSpec,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (h, hkv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let (p0, n_pos) = (layout.hook_offset, layout.hook_total);
        let site =
            |hp: HookPoint, v: Tensor, c: &mut ActivationCache| hooks.apply(hp, v, p0, n_pos, c);
        let k = site(
            HookPoint::K(l),
            block.attn.k.forward(normed)?.reshape((b, t, hkv, dh))?,
            cache,
        )?;
        let v = site(
            HookPoint::V(l),
            block.attn.v.forward(normed)?.reshape((b, t, hkv, dh))?,
            cache,
        )?;
        let (k, v) = self.keys_values(l, k, v, layout)?;
        let (x_last, normed_last, mask) = match &layout.last_tokens {
            Some(idx) => {
                let pick = |a: &Tensor| {
                    a.squeeze(0)?
                        .contiguous()?
                        .index_select(idx, 0)?
                        .unsqueeze(0)
                };
                (pick(x)?, pick(normed)?, layout.mask.index_select(idx, 0)?)
            }
            None => (
                x.narrow(1, t - 1, 1)?,
                normed.narrow(1, t - 1, 1)?,
                layout.mask.narrow(0, t - 1, 1)?,
            ),
        };
        let (qb, qt, _) = x_last.dims3()?;
        let mut q = block
            .attn
            .q
            .forward(&normed_last)?
            .reshape((qb, qt, h, dh))?
            .transpose(1, 2)?
            .contiguous()?;
        if let Some(rot) = &self.rotary {
            let last = Tensor::new(vec![layout.last_pos as u32; qt], self.device())?;
            q = rot.apply(&q, &TokenPositions::Index(last))?;
        }
        let kv = (k.clone(), v.clone());
        let (k, v) = (repeat_kv(&k, h / hkv)?, repeat_kv(&v, h / hkv)?);
        let scores = (q.matmul(&k.t()?)? * cfg.attn_scale as f64)?.broadcast_add(&mask)?;
        let z = softmax_last_dim(&scores)?.matmul(&v)?.transpose(1, 2)?;
        let attn_out = block.attn.o.forward(&z.reshape((qb, qt, h * dh))?)?;
        let mlp = |input: &Tensor, c: &mut ActivationCache| {
            let normed = block.ln2.forward(input)?;
            self.mlp(l, block, &normed, &HookSpec::new(), 0, qt, c)
        };
        let out = if cfg.parallel_attn_mlp {
            let m = mlp(&x_last, cache)?;
            ((x_last + attn_out)? + m)?
        } else {
            let mid = (x_last + attn_out)?;
            let m = mlp(&mid, cache)?;
            (mid + m)?
        };
        Ok((out, kv))
    }

    /// Rotates new keys and prepends the cached keys/values of earlier positions.
    ///
    /// # Shapes
    /// `k, v: [batch, pos, n_kv_heads, d_head]` -> `[batch, n_kv_heads, keys, d_head]`
    fn keys_values(
        &self,
        l: usize,
        k: Tensor,
        v: Tensor,
        layout: &Layout<'_>,
    ) -> CResult<(Tensor, Tensor)> {
        let b = k.dim(0)?;
        let mut k = k.transpose(1, 2)?.contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(rot) = &self.rotary {
            k = rot.apply(&k, &layout.positions)?;
        }
        if let Some((kv, n_past)) = layout.past {
            let (pk, pv) = &kv.layers[l];
            let pk = broadcast_rows(&pk.narrow(2, 0, n_past)?, b)?;
            let pv = broadcast_rows(&pv.narrow(2, 0, n_past)?, b)?;
            k = Tensor::cat(&[&pk, &k], 2)?;
            v = Tensor::cat(&[&pv, &v], 2)?;
        }
        Ok((k, v))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        layout: &Layout<'_>,
        hooks: &HookSpec,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let (p0, n_pos) = (layout.hook_offset, layout.hook_total);
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (h, hkv, dh) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let site =
            |hp: HookPoint, v: Tensor, c: &mut ActivationCache| hooks.apply(hp, v, p0, n_pos, c);
        let q = site(
            HookPoint::Q(l),
            block.attn.q.forward(x)?.reshape((b, t, h, dh))?,
            cache,
        )?;
        let k = site(
            HookPoint::K(l),
            block.attn.k.forward(x)?.reshape((b, t, hkv, dh))?,
            cache,
        )?;
        let v = site(
            HookPoint::V(l),
            block.attn.v.forward(x)?.reshape((b, t, hkv, dh))?,
            cache,
        )?;
        // [batch, head, pos, d_head]
        let mut q = q.transpose(1, 2)?.contiguous()?;
        if let Some(rot) = &self.rotary {
            q = rot.apply(&q, &layout.positions)?;
        }
        let (k, v) = self.keys_values(l, k, v, layout)?;
        let kv = (k.clone(), v.clone());
        let (k, v) = (repeat_kv(&k, h / hkv)?, repeat_kv(&v, h / hkv)?);
        let scores = (q.matmul(&k.t()?)? * cfg.attn_scale as f64)?.broadcast_add(&layout.mask)?;
        let mut scores = site(HookPoint::AttnScores(l), scores, cache)?;
        if hooks.edits(HookPoint::AttnScores(l)) {
            // An edit cannot unmask a key the causal (or packing) mask
            // hides: re-adding the additive mask keeps masked entries at
            // −inf and leaves the others exactly as edited.
            scores = scores.broadcast_add(&layout.mask)?;
        }
        let pattern = softmax_last_dim(&scores)?;
        let pattern = site(HookPoint::Pattern(l), pattern, cache)?;
        let z = pattern.matmul(&v)?.transpose(1, 2)?; // [batch, pos, head, d_head]
        let z = site(HookPoint::Z(l), z, cache)?;
        let out = block.attn.o.forward(&z.reshape((b, t, h * dh))?)?;
        Ok((out, kv))
    }

    #[allow(clippy::too_many_arguments)]
    fn mlp(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        hooks: &HookSpec,
        p0: usize,
        n_pos: usize,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let site =
            |hp: HookPoint, v: Tensor, c: &mut ActivationCache| hooks.apply(hp, v, p0, n_pos, c);
        let act = self.cfg.act;
        let post = match &block.mlp.w_gate {
            Some(gate) => {
                let pre = site(HookPoint::MlpPre(l), gate.forward(x)?, cache)?;
                (activate(&pre, act)? * block.mlp.w_in.forward(x)?)?
            }
            None => {
                let pre = site(HookPoint::MlpPre(l), block.mlp.w_in.forward(x)?, cache)?;
                activate(&pre, act)?
            }
        };
        let post = site(HookPoint::MlpPost(l), post, cache)?;
        block.mlp.w_out.forward(&post)
    }
}
