//! A sequential block in two halves, for callers that must look at what
//! the heads wrote before choosing the MLP's input (a circuit's patched
//! pass: the MLP's edit depends on this pass's head outputs). Running the
//! whole block twice for that computed attention twice and the MLP once in
//! vain; the halves compute each once, by the same steps as the full
//! forward ([`Transformer::forward`]), so their composition equals the
//! block exactly.
//!
//! Dense rows only, every position from 0 (no cached keys), and no
//! parallel attention/MLP blocks (their MLP does not read the heads).

use candle_core::{Result as CResult, Tensor};

use super::super::hooks::{ActivationCache, HookPoint, HookSpec};
use super::block::Sites;
use super::{StartState, Transformer};

impl Transformer {
    /// Block `l` from `resid_pre` to `resid_mid`: hooks at `resid_pre`,
    /// the attention's sites and `resid_mid` apply as in a full forward.
    ///
    /// # Shapes
    /// `x: [batch, pos, d_model]` -> same (the hooked `resid_mid`)
    pub fn attention_half(
        &self,
        l: usize,
        x: &Tensor,
        hooks: &HookSpec,
    ) -> CResult<(Tensor, ActivationCache)> {
        self.require_sequential(l)?;
        let start = StartState {
            layer: l,
            resid: x.clone(),
            pos_offset: 0,
            past: None,
            batch: x.dim(0)?,
            packing: None,
        };
        let layout = self.dense_layout(&start, self.dtype())?;
        let sites = Sites::of(hooks, &layout);
        let mut cache = ActivationCache::default();
        let x = sites.apply(HookPoint::ResidPre(l), x.clone(), &mut cache)?;
        let block = &self.blocks[l];
        let (attn_out, _) = self.attention_part(l, block, &x, &layout, sites, &mut cache)?;
        let mid = sites.apply(HookPoint::ResidMid(l), (x + attn_out)?, &mut cache)?;
        Ok((mid, cache))
    }

    /// Block `l` from `resid_mid` (as [`Self::attention_half`] returns it)
    /// to `resid_post`: hooks at the MLP's sites and `resid_post` apply.
    ///
    /// # Shapes
    /// `mid: [batch, pos, d_model]` -> same (the hooked `resid_post`)
    pub fn mlp_half(
        &self,
        l: usize,
        mid: &Tensor,
        hooks: &HookSpec,
    ) -> CResult<(Tensor, ActivationCache)> {
        self.require_sequential(l)?;
        let sites = Sites {
            hooks,
            p0: 0,
            n_pos: mid.dim(1)?,
        };
        let mut cache = ActivationCache::default();
        let out = self.mlp_part(l, &self.blocks[l], mid.clone(), sites, &mut cache)?;
        let out = sites.apply(HookPoint::ResidPost(l), out, &mut cache)?;
        Ok((out, cache))
    }

    fn require_sequential(&self, l: usize) -> CResult<()> {
        if self.cfg.parallel_attn_mlp {
            candle_core::bail!("block halves need sequential blocks (this model runs attention and MLP in parallel)");
        }
        if l >= self.cfg.n_layers {
            candle_core::bail!("block {l} is past the model's {} blocks", self.cfg.n_layers);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use crate::model::random::{preset_config, random_weights};
    use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, StartState, Transformer};
    use crate::util::testing::max_diff;

    /// A pass over block `l` alone, from `x` (every position, no cache).
    fn block_only(x: &Tensor, l: usize, pattern_only: bool) -> ForwardOptions<'static> {
        ForwardOptions {
            start: Some(StartState {
                layer: l,
                resid: x.clone(),
                pos_offset: 0,
                past: None,
                batch: x.dim(0).unwrap(),
                packing: None,
            }),
            stop_before_layer: Some(l + 1),
            pattern_only,
            ..Default::default()
        }
    }

    #[test]
    fn the_two_halves_are_the_block() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let cfg = preset_config(preset).unwrap();
            let w = random_weights(&cfg, 5, &Device::Cpu, DType::F32).unwrap();
            let m = Transformer::new(cfg, w).unwrap();
            let d = m.cfg.d_model;
            let x = Tensor::randn(0f32, 1.0, (2, 6, d), &Device::Cpu).unwrap();
            let l = 0;
            let edit = Tensor::randn(0f32, 0.5, (2, 6, d), &Device::Cpu).unwrap();
            let spec = HookSpec::new()
                .intervene(HookPoint::MlpIn(l), Edit::Add(edit))
                .capture(HookPoint::AttnResult(l))
                .capture(HookPoint::MlpOut(l));
            let full = m.forward(None, &spec, &block_only(&x, l, false)).unwrap();
            let (mid, a) = m.attention_half(l, &x, &spec).unwrap();
            let (post, b) = m.mlp_half(l, &mid, &spec).unwrap();
            let same = |p: &Tensor, q: &Tensor| assert_eq!(max_diff(p, q), 0.0, "{preset}");
            same(&post, full.resid.as_ref().unwrap());
            let hp = HookPoint::AttnResult(l);
            same(a.get(hp).unwrap(), full.cache.get(hp).unwrap());
            let hp = HookPoint::MlpOut(l);
            same(b.get(hp).unwrap(), full.cache.get(hp).unwrap());
        }
    }

    /// A pass that stops at a block's pattern reads the same pattern as
    /// the whole block (edits of its query and key inputs included), and
    /// hands back the block's input.
    #[test]
    fn pattern_only_reads_the_blocks_pattern() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let cfg = preset_config(preset).unwrap();
            let w = random_weights(&cfg, 9, &Device::Cpu, DType::F32).unwrap();
            let m = Transformer::new(cfg, w).unwrap();
            let (d, h, hkv) = (m.cfg.d_model, m.cfg.n_heads, m.cfg.n_kv_heads);
            let x = Tensor::randn(0f32, 1.0, (3, 5, d), &Device::Cpu).unwrap();
            let l = 1;
            let edit = |n| Tensor::randn(0f32, 0.5, (3, 5, n, d), &Device::Cpu).unwrap();
            let hp = HookPoint::Pattern(l);
            let spec = HookSpec::new()
                .intervene(HookPoint::QInput(l), Edit::Add(edit(h)))
                .intervene(HookPoint::KInput(l), Edit::Add(edit(hkv)))
                .capture(hp);
            let run = |spec: &HookSpec, pattern_only| {
                m.forward(None, spec, &block_only(&x, l, pattern_only))
            };
            let (full, part) = (run(&spec, false).unwrap(), run(&spec, true).unwrap());
            let (a, b) = (full.cache.get(hp).unwrap(), part.cache.get(hp).unwrap());
            assert_eq!(a.dims(), [3, h, 5, 5], "{preset}");
            assert_eq!(max_diff(a, b), 0.0, "{preset}");
            let back = max_diff(&part.resid.unwrap(), &x);
            assert_eq!(back, 0.0, "{preset}: the block's input comes back");
            // A hook after the pattern would be skipped: refused.
            let late = spec.clone().capture(HookPoint::MlpOut(l));
            let err = run(&late, true).err().expect("refused").to_string();
            assert!(err.contains("skips the hooks after it"), "{err}");
        }
    }
}
