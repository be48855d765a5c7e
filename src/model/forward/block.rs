//! One transformer block: attention (split into keys/values, queries and
//! the attention itself, so the full pass and the last-position shortcut
//! share every step) and the MLP, with hooks applied at each site.

use candle_core::{Result as CResult, Tensor};

use super::super::hooks::{ActivationCache, HookPoint, HookSpec};
use super::super::layers::{activate, broadcast_rows, matmul_weight, repeat_kv, softmax_last_dim};
use super::super::layers::{softcap, Block, Linear, Norm};
use super::super::layout::Layout;
use super::super::rotary::TokenPositions;
use super::Transformer;

/// Where hooks apply in a pass: the spec and the computed position range
/// (`p0..n_pos`) that full-length edits are narrowed to.
#[derive(Clone, Copy)]
pub(super) struct Sites<'a> {
    pub(super) hooks: &'a HookSpec,
    pub(super) p0: usize,
    pub(super) n_pos: usize,
}

impl<'a> Sites<'a> {
    pub(super) fn of(hooks: &'a HookSpec, layout: &Layout<'_>) -> Self {
        Sites {
            hooks,
            p0: layout.hook_offset,
            n_pos: layout.hook_total,
        }
    }
    pub(super) fn apply(
        &self,
        hp: HookPoint,
        t: Tensor,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        self.hooks.apply(hp, t, self.p0, self.n_pos, cache)
    }
}

/// A block's input: the residual stream and its `ln1` normalisation.
#[derive(Clone, Copy)]
pub(super) struct Inputs<'a> {
    pub(super) x: &'a Tensor,
    pub(super) normed: &'a Tensor,
}

/// Gemma 3's per-head RMSNorm of queries or keys `[batch, pos, head, d_head]`,
/// after their hooks (TransformerLens's `hook_q`/`hook_k` are the raw
/// projections) and before rotary.
fn head_norm(norm: &Option<Norm>, x: Tensor) -> CResult<Tensor> {
    match norm {
        Some(n) => n.forward(&x),
        None => Ok(x),
    }
}

/// A block's shared norm, its scale hooked at `hp` (`ln1.hook_scale`,
/// `ln2.hook_scale`) when a spec names it.
fn norm_at(
    norm: &Norm,
    x: &Tensor,
    hp: HookPoint,
    sites: Sites<'_>,
    cache: &mut ActivationCache,
) -> CResult<Tensor> {
    if sites.hooks.wants(hp) {
        norm.forward_hooked(x, |s| sites.apply(hp, s, cache))
    } else {
        norm.forward(x)
    }
}

/// Applies `sites` when there are any (the last-position shortcut has none
/// after keys and values).
fn maybe(
    sites: Option<Sites<'_>>,
    hp: HookPoint,
    t: Tensor,
    cache: &mut ActivationCache,
) -> CResult<Tensor> {
    match sites {
        Some(s) => s.apply(hp, t, cache),
        None => Ok(t),
    }
}

impl Transformer {
    /// A whole block over every computed position: `resid_pre` -> `resid_post`.
    ///
    /// # Shapes
    /// `x: [batch, pos, d_model]` -> same, plus this block's keys and values.
    pub(super) fn block(
        &self,
        l: usize,
        block: &Block,
        x: Tensor,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let (attn_out, kv) = self.attention_part(l, block, &x, layout, sites, cache)?;
        let x = if self.cfg.parallel_attn_mlp {
            let mlp_in = self.mlp_input(l, block, &x, sites, cache)?;
            let mlp_out = self.mlp(l, block, &mlp_in, Some(sites), cache)?;
            let mlp_out = sites.apply(HookPoint::MlpOut(l), block.mlp_post(mlp_out)?, cache)?;
            (x + attn_out)?.add(&mlp_out)?
        } else {
            let mid = sites.apply(HookPoint::ResidMid(l), (x + attn_out)?, cache)?;
            self.mlp_part(l, block, mid, sites, cache)?
        };
        let x = sites.apply(HookPoint::ResidPost(l), x, cache)?;
        Ok((x, kv))
    }

    /// A block resumed from its attention's per-head outputs: `z` is the
    /// unpatched run's `hook_z` at the computed positions, which the hooks
    /// from `hook_z` on (patches included) then see as in [`Self::block`].
    /// Exact when no hook touches the block before `hook_z` (the forward
    /// checks): the block's queries, keys, values and pattern are those of
    /// the run `z` came from, so they need not be recomputed.
    ///
    /// # Shapes
    /// `x: [batch, pos, d_model]`, `z: [batch, pos, n_heads, d_head]` -> `x`'s
    pub(super) fn block_from_z(
        &self,
        l: usize,
        block: &Block,
        x: Tensor,
        z: &Tensor,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let attn_out = block.attn_post(self.attn_output(l, block, z, Some(sites), cache)?)?;
        let attn_out = sites.apply(HookPoint::AttnOut(l), attn_out, cache)?;
        let x = if self.cfg.parallel_attn_mlp {
            let mlp_in = self.mlp_input(l, block, &x, sites, cache)?;
            let mlp_out = self.mlp(l, block, &mlp_in, Some(sites), cache)?;
            let mlp_out = sites.apply(HookPoint::MlpOut(l), block.mlp_post(mlp_out)?, cache)?;
            (x + attn_out)?.add(&mlp_out)?
        } else {
            let mid = sites.apply(HookPoint::ResidMid(l), (x + attn_out)?, cache)?;
            self.mlp_part(l, block, mid, sites, cache)?
        };
        sites.apply(HookPoint::ResidPost(l), x, cache)
    }

    /// The attention of a block over every computed position: what it adds
    /// to the residual stream (hooked at `attn_out`), and its keys and values.
    pub(super) fn attention_part(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let (q, k, v) = self.queries_keys_values(l, block, x, layout, sites, cache)?;
        let mask = layout.mask_for(self.cfg.extras.is_local(l));
        let attn_out = self.attend(l, block, &q, &k, &v, mask, Some(sites), cache)?;
        // Post-norms (Gemma 2/3) come before the hooks, as in TransformerLens:
        // hook_attn_out and hook_mlp_out are what the residual stream adds.
        let attn_out = block.attn_post(attn_out)?;
        let attn_out = sites.apply(HookPoint::AttnOut(l), attn_out, cache)?;
        Ok((attn_out, (k, v)))
    }

    /// A block's attention as far as its pattern (hooked at `attn_scores`
    /// and `pattern` like the full block's), with its keys and values: the
    /// whole block's work up to where an edit of its query, key or value
    /// inputs shows in the pattern (`ForwardOptions::pattern_only`).
    pub(super) fn pattern_part(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, Tensor)> {
        let (q, k, v) = self.queries_keys_values(l, block, x, layout, sites, cache)?;
        let mask = layout.mask_for(self.cfg.extras.is_local(l));
        self.pattern(l, &q, &k, mask, Some(sites), cache)?;
        Ok((k, v))
    }

    /// `ln1` (its scale hooked), then the block's keys/values (with the
    /// cached ones prepended) and queries, each hooked: what every pass over
    /// a block's attention starts with.
    fn queries_keys_values(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, Tensor, Tensor)> {
        let normed = norm_at(&block.ln1, x, HookPoint::Ln1Scale(l), sites, cache)?;
        let inputs = Inputs { x, normed: &normed };
        let (k, v) = self.keys_values(l, block, inputs, layout, Some(sites), cache)?;
        let q = self.queries(l, block, inputs, &layout.positions, Some(sites), cache)?;
        Ok((q, k, v))
    }

    /// A sequential block's second half: `resid_mid` (already hooked) ->
    /// `resid_post` before its hook.
    pub(super) fn mlp_part(
        &self,
        l: usize,
        block: &Block,
        mid: Tensor,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let mlp_in = self.mlp_input(l, block, &mid, sites, cache)?;
        let mlp_out = self.mlp(l, block, &mlp_in, Some(sites), cache)?;
        let mlp_out = sites.apply(HookPoint::MlpOut(l), block.mlp_post(mlp_out)?, cache)?;
        mid + mlp_out
    }

    /// The final block when only last-position logits are wanted and no hook
    /// touches that block past its keys and values: keys and values are
    /// computed for every position (the last query attends to them), the
    /// query, attention output and MLP only for each row's last token, by
    /// the same steps as [`Self::block`].
    ///
    /// # Shapes
    /// returns `[batch, 1, d_model]` (dense) or `[1, rows, d_model]` (packed)
    pub(super) fn final_block_last_only(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        layout: &Layout<'_>,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let normed = block.ln1.forward(x)?;
        let inputs = Inputs { x, normed: &normed };
        let (k, v) = self.keys_values(l, block, inputs, layout, Some(sites), cache)?;
        let full_mask = layout.mask_for(self.cfg.extras.is_local(l));
        let (x_last, normed_last, mask) = match &layout.last_tokens {
            Some(idx) => {
                let pick = |a: &Tensor| {
                    a.squeeze(0)?
                        .contiguous()?
                        .index_select(idx, 0)?
                        .unsqueeze(0)
                };
                (pick(x)?, pick(&normed)?, full_mask.index_select(idx, 0)?)
            }
            None => {
                let t = x.dim(1)?;
                (
                    x.narrow(1, t - 1, 1)?,
                    normed.narrow(1, t - 1, 1)?,
                    full_mask.narrow(0, t - 1, 1)?,
                )
            }
        };
        let qt = x_last.dim(1)?;
        let last = Tensor::new(vec![layout.last_pos as u32; qt], self.device())?;
        let positions = TokenPositions::Index(last);
        let inputs = Inputs {
            x: &x_last,
            normed: &normed_last,
        };
        let q = self.queries(l, block, inputs, &positions, None, cache)?;
        let attn_out = block.attn_post(self.attend(l, block, &q, &k, &v, &mask, None, cache)?)?;
        let out = if self.cfg.parallel_attn_mlp {
            let m = self.mlp(l, block, &block.ln2.forward(&x_last)?, None, cache)?;
            ((x_last + attn_out)? + block.mlp_post(m)?)?
        } else {
            let mid = (x_last + attn_out)?;
            let m = self.mlp(l, block, &block.ln2.forward(&mid)?, None, cache)?;
            (mid + block.mlp_post(m)?)?
        };
        Ok((out, (k, v)))
    }

    /// Projects, hooks and rotates keys and values, and prepends the cached
    /// keys/values of earlier positions.
    ///
    /// # Shapes
    /// `normed: [batch, pos, d_model]` -> `k, v: [batch, n_kv_heads, keys, d_head]`
    fn keys_values(
        &self,
        l: usize,
        block: &Block,
        inputs: Inputs<'_>,
        layout: &Layout<'_>,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<(Tensor, Tensor)> {
        let (hkv, b) = (self.cfg.n_kv_heads, inputs.x.dim(0)?);
        let k = self.project(
            HookPoint::KInput(l),
            &block.attn.k,
            block,
            inputs,
            hkv,
            sites,
            cache,
        )?;
        let k = maybe(sites, HookPoint::K(l), k, cache)?;
        let k = head_norm(&block.attn.k_norm, k)?;
        let v = self.project(
            HookPoint::VInput(l),
            &block.attn.v,
            block,
            inputs,
            hkv,
            sites,
            cache,
        )?;
        let v = maybe(sites, HookPoint::V(l), v, cache)?;
        let mut k = k.transpose(1, 2)?.contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(rot) = self.rotary_for(l) {
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

    /// Projects, hooks and rotates queries at the given absolute positions.
    ///
    /// # Shapes
    /// `normed: [batch, q, d_model]` -> `[batch, n_heads, q, d_head]`
    fn queries(
        &self,
        l: usize,
        block: &Block,
        inputs: Inputs<'_>,
        positions: &TokenPositions,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let h = self.cfg.n_heads;
        let q = self.project(
            HookPoint::QInput(l),
            &block.attn.q,
            block,
            inputs,
            h,
            sites,
            cache,
        )?;
        let q = maybe(sites, HookPoint::Q(l), q, cache)?;
        let q = head_norm(&block.attn.q_norm, q)?;
        let q = q.transpose(1, 2)?.contiguous()?;
        match self.rotary_for(l) {
            Some(rot) => rot.apply(&q, positions),
            None => Ok(q),
        }
    }

    /// Scores, pattern and weighted values (hooked at `attn_scores`,
    /// `pattern` and `z`), then the output projection.
    ///
    /// # Shapes
    /// `q: [batch, n_heads, q, d_head]`, `k, v: [batch, n_kv_heads, keys, d_head]`,
    /// `mask: [q, keys]` -> `[batch, q, d_model]`
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        l: usize,
        block: &Block,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let pattern = self.pattern(l, q, k, mask, sites, cache)?;
        let v = repeat_kv(v, q.dim(1)? / self.cfg.n_kv_heads)?;
        let z = pattern.matmul(&v)?.transpose(1, 2)?; // [batch, pos, head, d_head]
        self.attn_output(l, block, &z, sites, cache)
    }

    /// The attention pattern (hooked at `attn_scores` and `pattern`).
    ///
    /// # Shapes
    /// `q: [batch, n_heads, q, d_head]`, `k: [batch, n_kv_heads, keys, d_head]`,
    /// `mask: [q, keys]` -> `[batch, n_heads, q, keys]`
    fn pattern(
        &self,
        l: usize,
        q: &Tensor,
        k: &Tensor,
        mask: &Tensor,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let k = repeat_kv(k, q.dim(1)? / self.cfg.n_kv_heads)?;
        let scores = (q.matmul(&k.t()?)? * self.cfg.attn_scale as f64)?;
        // Soft-capping (Gemma 2) comes before the mask, as in transformers.
        let scores = softcap(scores, self.cfg.extras.attn_softcap)?.broadcast_add(mask)?;
        let mut scores = maybe(sites, HookPoint::AttnScores(l), scores, cache)?;
        if sites.is_some_and(|s| s.hooks.edits(HookPoint::AttnScores(l))) {
            // An edit cannot unmask a key the causal (or packing) mask
            // hides: re-adding the additive mask keeps masked entries at
            // −inf and leaves the others exactly as edited.
            scores = scores.broadcast_add(mask)?;
        }
        maybe(
            sites,
            HookPoint::Pattern(l),
            softmax_last_dim(&scores)?,
            cache,
        )
    }

    /// The attention output from the per-head outputs (hooked at `z` and
    /// `result`): the output projection.
    ///
    /// # Shapes
    /// `z: [batch, pos, n_heads, d_head]` -> `[batch, pos, d_model]`
    fn attn_output(
        &self,
        l: usize,
        block: &Block,
        z: &Tensor,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let (b, t, h, dh) = z.dims4()?;
        let z = maybe(sites, HookPoint::Z(l), z.clone(), cache)?;
        let hp = HookPoint::AttnResult(l);
        match sites.filter(|s| s.hooks.wants(hp)) {
            Some(s) => {
                let result = s.apply(hp, self.head_results(block, &z)?, cache)?;
                if !s.hooks.edits(hp) {
                    return block.attn.o.forward(&z.reshape((b, t, h * dh))?);
                }
                // The edited per-head outputs are what the residual receives.
                let out = result.sum(2)?;
                match &block.attn.o.b {
                    Some(bias) => out.broadcast_add(bias),
                    None => Ok(out),
                }
            }
            None => block.attn.o.forward(&z.reshape((b, t, h * dh))?),
        }
    }

    /// Each head's share of the output projection, `z_h W_O^h` (no bias):
    /// `attn.hook_result`.
    ///
    /// # Shapes
    /// `z: [batch, pos, n_heads, d_head]` -> `[batch, pos, n_heads, d_model]`
    fn head_results(&self, block: &Block, z: &Tensor) -> CResult<Tensor> {
        let (b, t, h, dh) = z.dims4()?;
        let d = self.cfg.d_model;
        let w = block.attn.o.w.to_dense()?.reshape((h, dh, d))?;
        let zs = z.transpose(0, 2)?.contiguous()?.reshape((h, t * b, dh))?;
        matmul_weight(&zs, &w)?
            .reshape((h, t, b, d))?
            .transpose(0, 2)
    }

    /// Queries, keys or values `[batch, pos, heads, d_head]` (before rotary):
    /// from the block's shared normalised input, or — when a spec names the
    /// split-input hook `hp` — from each head's own copy of the residual
    /// stream, hooked, then normalised and projected per head (so an edit of
    /// one head's input reaches that head alone, through its own norm).
    #[allow(clippy::too_many_arguments)]
    fn project(
        &self,
        hp: HookPoint,
        proj: &Linear,
        block: &Block,
        inputs: Inputs<'_>,
        heads: usize,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let (b, t, d) = inputs.x.dims3()?;
        match sites.filter(|s| s.hooks.wants(hp)) {
            Some(s) => {
                let per_head = inputs.x.unsqueeze(2)?.broadcast_as((b, t, heads, d))?;
                let per_head = s.apply(hp, per_head, cache)?;
                proj.forward_heads(&block.ln1.forward(&per_head)?)
            }
            None => proj
                .forward(inputs.normed)?
                .reshape((b, t, heads, self.cfg.d_head)),
        }
    }

    /// The MLP's input before `ln2`, hooked at `hook_mlp_in` when a spec
    /// names it (an edit there reaches the MLP only, not the residual
    /// stream), then normalised.
    fn mlp_input(
        &self,
        l: usize,
        block: &Block,
        resid: &Tensor,
        sites: Sites<'_>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let hp = HookPoint::MlpIn(l);
        let scale = HookPoint::Ln2Scale(l);
        if sites.hooks.wants(hp) {
            let resid = sites.apply(hp, resid.clone(), cache)?;
            norm_at(&block.ln2, &resid, scale, sites, cache)
        } else {
            norm_at(&block.ln2, resid, scale, sites, cache)
        }
    }

    /// # Shapes
    /// `x: [batch, pos, d_model]` (normalised) -> `[batch, pos, d_model]`
    fn mlp(
        &self,
        l: usize,
        block: &Block,
        x: &Tensor,
        sites: Option<Sites<'_>>,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        let act = self.cfg.act;
        let post = match &block.mlp.w_gate {
            Some(gate) => {
                let pre = maybe(sites, HookPoint::MlpPre(l), gate.forward(x)?, cache)?;
                (activate(&pre, act)? * block.mlp.w_in.forward(x)?)?
            }
            None => {
                let pre = maybe(
                    sites,
                    HookPoint::MlpPre(l),
                    block.mlp.w_in.forward(x)?,
                    cache,
                )?;
                activate(&pre, act)?
            }
        };
        let post = maybe(sites, HookPoint::MlpPost(l), post, cache)?;
        block.mlp.w_out.forward(&post)
    }
}
