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

mod block;
mod build;
mod halves;

use super::config::ModelConfig;
use super::hooks::{ActivationCache, HookPoint, HookSpec};
use super::layers::softcap;
pub use super::layers::{Attention, Block, Linear, Mlp, Norm};
use super::layout::Layout;
pub use super::layout::Packing;
use super::rotary::{Rotary, TokenPositions};
use block::Sites;

/// A gradient method asked of a model with quantized weights.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{what} needs gradients, which quantized weights do not carry; load the model with \
     float weights (--weights f32, or --weights bf16 for half the memory)"
)]
pub struct NeedsFloatWeights {
    pub what: String,
}

/// What the blocks of one pass produced.
struct BlocksRun {
    x: Tensor,
    kv: Vec<(Tensor, Tensor)>,
    /// The final block kept only each row's last token.
    trimmed: bool,
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
    /// With `stop_before_layer`: the last block run stops once its
    /// attention pattern is computed and hooked (`attn_scores`, `pattern`);
    /// its `z`, output projection and MLP are skipped, and the output's
    /// `resid` is that block's input. For reading how an edit of a block's
    /// attention inputs moves its pattern (AtP*'s QK fix).
    pub pattern_only: bool,
    /// With `start`: the start block's attention is not recomputed; this is
    /// its `hook_z` before any hook, for the computed positions, in the
    /// layout of `start.resid` (`[batch or 1, pos, n_heads, d_head]`), taken
    /// from the run the residual came from. The hooks from `hook_z` on
    /// apply as usual. Refused with `return_kv` or a hook in the start
    /// block before `hook_z`, which such a pass would skip.
    pub resume_z: Option<Tensor>,
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
    /// Rotary of local layers when their base differs (Gemma 3).
    rotary_local: Option<Rotary>,
    device: Device,
}

impl Transformer {
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of activations (and of float weights).
    pub fn dtype(&self) -> DType {
        self.w_e.dtype()
    }

    /// The rotary tables layer `l` uses.
    fn rotary_for(&self, l: usize) -> Option<&Rotary> {
        match &self.rotary_local {
            Some(r) if self.cfg.extras.is_local(l) => Some(r),
            _ => self.rotary.as_ref(),
        }
    }

    /// True when projection matrices are held quantized (`--weights quantized`).
    pub fn is_quantized(&self) -> bool {
        self.blocks.iter().any(|b| {
            let (a, m) = (&b.attn, &b.mlp);
            [&a.q, &a.k, &a.v, &a.o, &m.w_in, &m.w_out]
                .into_iter()
                .chain(m.w_gate.as_ref())
                .any(|l| l.w.is_quantized())
        })
    }

    /// Refuses a quantized model for a method that takes gradients: no
    /// gradient flows through a quantized matmul, so the method would
    /// silently see zeros. `what` names the method in the message.
    pub fn require_float_weights(&self, what: &str) -> Result<(), NeedsFloatWeights> {
        if self.is_quantized() {
            return Err(NeedsFloatWeights {
                what: what.to_string(),
            });
        }
        Ok(())
    }

    /// Runs the model: the start (embedding, or a given residual at a
    /// later block), the blocks, then the final norm and unembedding.
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
        if opts.resume_z.is_some() {
            check_resume_z(hooks, opts)?;
        }
        if opts.pattern_only {
            check_pattern_only(hooks, opts)?;
        }
        let (x, first_layer, layout) = self.begin(tokens, hooks, opts, &mut cache)?;
        let n_layers = self.cfg.n_layers;
        let last = opts.stop_before_layer.unwrap_or(n_layers).min(n_layers);
        let sites = Sites::of(hooks, &layout);
        let run = self.run_blocks(x, first_layer..last, &layout, sites, opts, &mut cache)?;
        let kv = opts.return_kv.then_some(KvCache { layers: run.kv });
        if last < n_layers || opts.pattern_only {
            return Ok(ForwardOutput {
                logits: None,
                cache,
                kv,
                resid: Some(run.x),
            });
        }
        let logits = self.finish(run.x, run.trimmed, &layout, opts, sites, &mut cache)?;
        Ok(ForwardOutput {
            logits: Some(logits),
            cache,
            kv,
            resid: None,
        })
    }

    /// The residual entering the first computed block, that block, and how
    /// the computed positions are laid out.
    fn begin<'a>(
        &self,
        tokens: Option<&Tensor>,
        hooks: &HookSpec,
        opts: &ForwardOptions<'a>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, usize, Layout<'a>)> {
        let dtype = self.dtype();
        if let Some(s) = &opts.start {
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
            return Ok((resid, s.layer, layout));
        }
        let tokens = tokens.ok_or_else(|| {
            candle_core::Error::Msg("forward needs tokens or a start state".into())
        })?;
        let t = tokens.dim(1)?;
        if t > self.cfg.n_ctx {
            candle_core::bail!(
                "{t} positions exceed the model's context of {}",
                self.cfg.n_ctx
            );
        }
        if t == 0 {
            candle_core::bail!("forward needs at least one token");
        }
        let (mask, local_mask) = self.dense_masks(t, 0, dtype)?;
        let layout = Layout {
            hook_offset: 0,
            hook_total: t,
            positions: TokenPositions::Range(0),
            mask,
            local_mask,
            past: None,
            last_tokens: None,
            last_pos: t - 1,
        };
        Ok((self.embed(tokens, hooks, cache)?, 0, layout))
    }

    /// Runs `layers`, cutting the final block down to the last position
    /// when only last-position logits are wanted and no hook needs more.
    fn run_blocks(
        &self,
        mut x: Tensor,
        layers: std::ops::Range<usize>,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        opts: &ForwardOptions<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<BlocksRun> {
        let mut kv = Vec::new();
        let first = layers.start;
        let layers_end = layers.end;
        for l in layers {
            let block = &self.blocks[l];
            x = sites.apply(HookPoint::ResidPre(l), x, cache)?;
            if let Some(z) = opts.resume_z.as_ref().filter(|_| l == first) {
                let z = match z.dim(0)? == x.dim(0)? {
                    true => z.clone(),
                    false => z.broadcast_as((x.dim(0)?, z.dim(1)?, z.dim(2)?, z.dim(3)?))?,
                };
                x = self.block_from_z(l, block, x, &z, sites, cache)?;
                continue;
            }
            if opts.pattern_only && l + 1 == layers_end {
                let layer_kv = self.pattern_part(l, block, &x, layout, sites, cache)?;
                if opts.return_kv {
                    kv.push(layer_kv);
                }
                break;
            }
            let trim =
                opts.last_pos_only && l + 1 == self.cfg.n_layers && !sites.hooks.reads_past_kv(l);
            let (out, layer_kv) = if trim {
                self.final_block_last_only(l, block, &x, layout, sites, cache)?
            } else {
                self.block(l, block, x, layout, sites, cache)?
            };
            if opts.return_kv {
                kv.push(layer_kv);
            }
            x = out;
            if trim {
                return Ok(BlocksRun {
                    x,
                    kv,
                    trimmed: true,
                });
            }
        }
        Ok(BlocksRun {
            x,
            kv,
            trimmed: false,
        })
    }

    /// Final norm (hooked at `ln_final`) and unembedding of the rows whose
    /// logits are wanted.
    fn finish(
        &self,
        x: Tensor,
        trimmed: bool,
        layout: &Layout<'_>,
        opts: &ForwardOptions<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let d_model = self.cfg.d_model;
        let (batch, t_local, _) = x.dims3()?;
        // Rows whose logits are wanted: `[rows, 1, d_model]` for last-position logits.
        let (x, rows) = match (&layout.last_tokens, opts.last_pos_only) {
            // The final block already kept one token per row.
            _ if trimmed => (x.reshape((batch * t_local, 1, d_model))?, batch * t_local),
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
        let n_pos = layout.hook_total;
        // Hooks here see the rows computed: packed rows one last token
        // each, last-position logits the last position only (full-length
        // edits are narrowed accordingly).
        let mut hook = |hp: HookPoint, t: Tensor| {
            if layout.last_tokens.is_some() {
                sites.hooks.apply(hp, t, 0, rows, cache)
            } else if last_only {
                sites.hooks.apply(hp, t, n_pos - 1, n_pos, cache)
            } else {
                sites.apply(hp, t, cache)
            }
        };
        let normed = if sites.hooks.wants(HookPoint::LnFinalScale) {
            self.ln_final
                .forward_hooked(&x, |s| hook(HookPoint::LnFinalScale, s))?
        } else {
            self.ln_final.forward(&x)?
        };
        let normed = hook(HookPoint::LnFinal, normed)?;
        let logits = self.unembed(&normed)?;
        if last_only {
            logits.reshape((rows, self.cfg.d_vocab))
        } else {
            Ok(logits)
        }
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
            // transformers rounds the scale to the embedding dtype first
            // (Gemma 3 270M: sqrt(640) is 25.298 in f32, 25.25 in bf16).
            let s = Tensor::new(&[s], &self.device)?.to_dtype(e.dtype())?;
            e = e.broadcast_mul(&s)?;
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

    /// Multiplies the final normalised residual by `W_U`, then soft-caps
    /// the logits where the family does (Gemma 2).
    ///
    /// # Shapes
    /// `x: [.., d_model]` -> `[.., d_vocab]`
    pub fn unembed(&self, x: &Tensor) -> CResult<Tensor> {
        let logits = Linear::dense(self.w_u.clone(), self.b_u.clone()).forward(x)?;
        softcap(logits, self.cfg.extras.final_softcap)
    }
}

/// Refuses a pass stopping at a block's pattern that has no block to stop
/// in or whose hooks ask for what it skips.
fn check_pattern_only(hooks: &HookSpec, opts: &ForwardOptions<'_>) -> CResult<()> {
    let first = opts.start.as_ref().map_or(0, |s| s.layer);
    let Some(stop) = opts.stop_before_layer.filter(|&s| s > first) else {
        candle_core::bail!(
            "a pass stopping at a pattern needs a block to stop in (stop_before_layer)"
        );
    };
    if hooks.touches_block_after_pattern(stop - 1) {
        candle_core::bail!(
            "a pass stopping at blocks.{}.attn.hook_pattern skips the hooks after it in that block",
            stop - 1
        );
    }
    Ok(())
}

/// Refuses a pass resumed from `hook_z` that would skip what its hooks ask:
/// it needs a start block, returns no keys/values (the start block's are
/// not recomputed), and no hook may sit in the start block before `hook_z`.
fn check_resume_z(hooks: &HookSpec, opts: &ForwardOptions<'_>) -> CResult<()> {
    let Some(start) = &opts.start else {
        candle_core::bail!("a pass resumed from hook_z needs a start state");
    };
    if opts.return_kv {
        candle_core::bail!("a pass resumed from hook_z recomputes no keys/values to return");
    }
    if hooks.touches_attention_before_z(start.layer) {
        candle_core::bail!(
            "a pass resumed from blocks.{}.attn.hook_z skips the hooks before it in that block",
            start.layer
        );
    }
    Ok(())
}
