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
//!   anything before `p`).

use candle_core::{DType, Device, Result as CResult, Tensor, D};

use super::config::{Activation, ModelConfig, NormKind, Positions, RopeScaling, RotaryStyle};
use super::hooks::{ActivationCache, HookPoint, HookSpec};
use super::weights::CanonicalWeights;
use super::ModelError;

/// `y = x W + b` with `W` stored `[d_in, d_out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    /// # Shapes
    /// `x: [.., d_in]` -> `[.., d_out]`
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, d_in))?.matmul(&self.w)?;
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.w.dim(1)?;
        y.reshape(out)
    }
}

#[derive(Debug, Clone)]
pub struct Norm {
    pub kind: NormKind,
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub eps: f64,
}

impl Norm {
    /// # Shapes
    /// `x: [.., d_model]` -> same
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let normed = match self.kind {
            NormKind::LayerNorm => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
            }
            NormKind::RmsNorm => {
                let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
                x.broadcast_div(&(ms + self.eps)?.sqrt()?)?
            }
        };
        let y = normed.to_dtype(dtype)?.broadcast_mul(&self.w)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    /// `W_in`: the up projection, or for gated MLPs the `up` half.
    pub w_in: Linear,
    /// The gate projection of gated MLPs (`hook_pre` is its output).
    pub w_gate: Option<Linear>,
    pub w_out: Linear,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub ln1: Norm,
    pub ln2: Norm,
    pub attn: Attention,
    pub mlp: Mlp,
}

/// Precomputed rotary tables for every position up to `n_ctx`.
#[derive(Debug, Clone)]
struct Rotary {
    /// `[n_ctx, rotary_dim / 2]`
    cos: Tensor,
    sin: Tensor,
    rotary_dim: usize,
    style: RotaryStyle,
}

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
        let (mut x, first_layer, p0, past) = match &opts.start {
            Some(s) => {
                let resid = if s.resid.dim(0)? != s.batch {
                    s.resid
                        .broadcast_as((s.batch, s.resid.dim(1)?, s.resid.dim(2)?))?
                } else {
                    s.resid.clone()
                };
                (resid, s.layer, s.pos_offset, s.past)
            }
            None => {
                let tokens = tokens.ok_or_else(|| {
                    candle_core::Error::Msg("forward needs tokens or a start state".into())
                })?;
                (self.embed(tokens, hooks, &mut cache)?, 0, 0, None)
            }
        };
        let (batch, t_local, _) = x.dims3()?;
        let n_pos = p0 + t_local;
        if n_pos > cfg.n_ctx {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                n_pos,
                cfg.n_ctx
            );
        }
        if p0 > 0 && past.is_none() {
            candle_core::bail!("a forward starting at position {p0} needs the cached keys/values");
        }
        let mask = causal_mask(t_local, p0, x.dtype(), &self.device)?;
        let last = opts
            .stop_before_layer
            .unwrap_or(cfg.n_layers)
            .min(cfg.n_layers);
        let mut kv_out = Vec::new();
        let site = |h: HookPoint, t: Tensor, cache: &mut ActivationCache| {
            hooks.apply(h, t, p0, n_pos, cache)
        };
        for (l, block) in self.blocks.iter().enumerate().take(last).skip(first_layer) {
            let past_l = match past {
                Some(kv) if p0 > 0 => Some(&kv.layers[l]),
                _ => None,
            };
            x = site(HookPoint::ResidPre(l), x, &mut cache)?;
            let (attn_out, kv) = self.attention(
                l,
                block,
                &block.ln1.forward(&x)?,
                past_l,
                &mask,
                hooks,
                p0,
                n_pos,
                &mut cache,
            )?;
            if opts.return_kv {
                kv_out.push(kv);
            }
            let attn_out = site(HookPoint::AttnOut(l), attn_out, &mut cache)?;
            x = if cfg.parallel_attn_mlp {
                let mlp_out = self.mlp(
                    l,
                    block,
                    &block.ln2.forward(&x)?,
                    hooks,
                    p0,
                    n_pos,
                    &mut cache,
                )?;
                let mlp_out = site(HookPoint::MlpOut(l), mlp_out, &mut cache)?;
                (x + attn_out)?.add(&mlp_out)?
            } else {
                let mid = site(HookPoint::ResidMid(l), (x + attn_out)?, &mut cache)?;
                let mlp_out = self.mlp(
                    l,
                    block,
                    &block.ln2.forward(&mid)?,
                    hooks,
                    p0,
                    n_pos,
                    &mut cache,
                )?;
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
        if opts.last_pos_only {
            x = x.narrow(1, t_local - 1, 1)?;
        }
        let normed = self.ln_final.forward(&x)?;
        let normed = if opts.last_pos_only {
            // The hook sees only the last position here; narrow full-length edits accordingly.
            hooks.apply(HookPoint::LnFinal, normed, n_pos - 1, n_pos, &mut cache)?
        } else {
            site(HookPoint::LnFinal, normed, &mut cache)?
        };
        let logits = self.unembed(&normed)?;
        let logits = if opts.last_pos_only {
            logits.reshape((batch, cfg.d_vocab))?
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

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: &Tensor,
        hooks: &HookSpec,
        p0: usize,
        n_pos: usize,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
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
        let mut k = k.transpose(1, 2)?.contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(rot) = &self.rotary {
            q = rot.apply(&q, p0)?;
            k = rot.apply(&k, p0)?;
        }
        if let Some((pk, pv)) = past {
            let pk = broadcast_rows(&pk.narrow(2, 0, p0)?, b)?;
            let pv = broadcast_rows(&pv.narrow(2, 0, p0)?, b)?;
            k = Tensor::cat(&[&pk, &k], 2)?;
            v = Tensor::cat(&[&pv, &v], 2)?;
        }
        let kv = (k.clone(), v.clone());
        let (k, v) = (repeat_kv(&k, h / hkv)?, repeat_kv(&v, h / hkv)?);
        let scores = (q.matmul(&k.t()?)? * cfg.attn_scale as f64)?.broadcast_add(mask)?;
        let scores = site(HookPoint::AttnScores(l), scores, cache)?;
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

fn activate(x: &Tensor, act: Activation) -> CResult<Tensor> {
    match act {
        Activation::GeluTanh => x.gelu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Silu => x.silu(),
        Activation::Relu => x.relu(),
    }
}

/// Softmax built from differentiable primitives.
pub fn softmax_last_dim(x: &Tensor) -> CResult<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)?.to_dtype(dtype)
}

/// Additive causal mask `[t_local, p0 + t_local]`: query `i` (absolute
/// position `p0 + i`) sees keys `0..=p0 + i`.
fn causal_mask(t_local: usize, p0: usize, dtype: DType, device: &Device) -> CResult<Tensor> {
    let n = p0 + t_local;
    let data: Vec<f32> = (0..t_local)
        .flat_map(|i| (0..n).map(move |j| if j <= p0 + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(data, (t_local, n), device)?.to_dtype(dtype)
}

/// Expands `[b, n_kv, t, d]` to `[b, n_kv * group, t, d]` (query head `h`
/// reads kv head `h / group`, as Hugging Face's `repeat_kv`).
fn repeat_kv(x: &Tensor, group: usize) -> CResult<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, hkv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, hkv, group, t, d))?
        .reshape((b, hkv * group, t, d))
}

fn broadcast_rows(x: &Tensor, batch: usize) -> CResult<Tensor> {
    if x.dim(0)? == batch {
        return Ok(x.clone());
    }
    let mut shape = x.dims().to_vec();
    shape[0] = batch;
    x.broadcast_as(shape)?.contiguous()
}

impl Rotary {
    fn new(
        r: &super::config::RotaryConfig,
        n_ctx: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let half = r.rotary_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / r.theta.powf(2.0 * i as f64 / r.rotary_dim as f64))
            .collect();
        let mut pos_scale = 1.0;
        match &r.scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => pos_scale = 1.0 / factor,
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            }) => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        // Hugging Face computes the angles in f32; do the same for parity.
        let inv_freq: Vec<f32> = inv_freq.iter().map(|&f| f as f32).collect();
        let mut cos = Vec::with_capacity(n_ctx * half);
        let mut sin = Vec::with_capacity(n_ctx * half);
        for p in 0..n_ctx {
            for &f in &inv_freq {
                let a = (p as f32 * pos_scale as f32) * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let mk = |v: Vec<f32>| -> Result<Tensor, ModelError> {
            Ok(Tensor::from_vec(v, (n_ctx, half), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            cos: mk(cos)?,
            sin: mk(sin)?,
            rotary_dim: r.rotary_dim,
            style: r.style,
        })
    }

    /// # Shapes
    /// `x: [batch, head, t, d_head]` for absolute positions `p0..p0 + t`.
    fn apply(&self, x: &Tensor, p0: usize) -> CResult<Tensor> {
        let (b, h, t, dh) = x.dims4()?;
        let rd = self.rotary_dim;
        let half = rd / 2;
        let cos = self.cos.narrow(0, p0, t)?;
        let sin = self.sin.narrow(0, p0, t)?;
        let rot = x.narrow(3, 0, rd)?;
        let rotated = match self.style {
            RotaryStyle::NeoX => {
                let x1 = rot.narrow(3, 0, half)?;
                let x2 = rot.narrow(3, half, half)?;
                let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
                let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
                Tensor::cat(&[&r1, &r2], 3)?
            }
            RotaryStyle::GptJ => {
                let pairs = rot.reshape((b, h, t, half, 2))?;
                let x1 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
                let x2 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
                let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
                let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
                Tensor::stack(&[&r1, &r2], 4)?.reshape((b, h, t, rd))?
            }
        };
        if rd == dh {
            Ok(rotated)
        } else {
            Tensor::cat(&[&rotated, &x.narrow(3, rd, dh - rd)?], 3)
        }
    }
}
