//! `general.architecture = gptneox` (Pythia). llama.cpp's converter
//! reorders the fused `query_key_value` rows from Hugging Face's
//! `[head, (q, k, v), d_head]` to Q, K, V blocks (`attn_qkv`), keeps rotary
//! in NeoX's half-split form on the first `rope.dimension_count` dimensions
//! of each head, and records `use_parallel_residual`.

use super::mapping::{Mapped, TensorMap};
use super::meta::Meta;
use super::Architecture;
use crate::model::config::{
    Activation, ModelConfig, NormKind, Positions, RotaryConfig, RotaryStyle,
};
use crate::model::ModelError;

pub const ARCH: Architecture = Architecture {
    name: "gptneox",
    config: |m, _| config(m),
    tensors: |m, config| Ok(tensors(m, config)),
};

fn config(m: &Meta) -> Result<ModelConfig, ModelError> {
    let d_model = m.positive("gptneox.embedding_length")?;
    let n_heads = m.positive("gptneox.attention.head_count")?;
    let d_head = m.d_head("gptneox", d_model, n_heads)?;
    // Pythia rotates a quarter of each head; the converter always writes it.
    let rotary_dim = m
        .opt_usize("gptneox.rope.dimension_count")?
        .unwrap_or(d_head / 4);
    Ok(ModelConfig {
        family: "gpt_neox".into(),
        n_layers: m.positive("gptneox.block_count")?,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: m
            .opt_usize("gptneox.feed_forward_length")?
            .unwrap_or(d_model.saturating_mul(4)),
        d_vocab: m.d_vocab(d_model)?,
        n_ctx: m.opt_usize("gptneox.context_length")?.unwrap_or(2048),
        norm: NormKind::LayerNorm,
        norm_eps: m
            .opt_f64("gptneox.attention.layer_norm_epsilon")?
            .unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(RotaryConfig {
            theta: m.opt_f64("gptneox.rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim,
            style: RotaryStyle::NeoX,
            scaling: None,
        }),
        // Pythia's `hidden_act: gelu` (exact); GGUF has no key for it.
        act: Activation::Gelu,
        gated_mlp: false,
        parallel_attn_mlp: m.opt_bool("gptneox.use_parallel_residual")?.unwrap_or(true),
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: !m.has_tensor("output.weight"),
        extras: Default::default(),
    })
}

fn tensors(m: &Meta, config: &ModelConfig) -> TensorMap {
    let mut t = TensorMap::default();
    t.push(Mapped::as_is("embed.W_E", "token_embd.weight"));
    t.fused_qkv_layers(|n: &str| m.has_tensor(n), config);
    t.final_norm_and_unembed(config.tied_unembed, true);
    t
}
