//! `general.architecture = gpt2`. llama.cpp's converter transposes GPT-2's
//! Conv1D weights to `[out, in]` like every other linear layer, keeps the
//! fused `attn_qkv` with rows Q, K, V, and writes the tied unembedding as
//! an `output.weight` copy of the embedding (used as the unembedding: the
//! values are the same).

use super::mapping::{Mapped, TensorMap};
use super::meta::Meta;
use super::Architecture;
use crate::model::config::{Activation, ModelConfig, NormKind, Positions};
use crate::model::ModelError;

pub const ARCH: Architecture = Architecture {
    name: "gpt2",
    config: |m, _| config(m),
    tensors: |m, config| Ok(tensors(m, config)),
};

fn config(m: &Meta) -> Result<ModelConfig, ModelError> {
    let d_model = m.positive("gpt2.embedding_length")?;
    let n_heads = m.positive("gpt2.attention.head_count")?;
    let d_head = m.d_head("gpt2", d_model, n_heads)?;
    Ok(ModelConfig {
        family: "gpt2".into(),
        n_layers: m.positive("gpt2.block_count")?,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: m
            .opt_usize("gpt2.feed_forward_length")?
            .unwrap_or(d_model.saturating_mul(4)),
        d_vocab: m.d_vocab(d_model)?,
        n_ctx: m.positive("gpt2.context_length")?,
        norm: NormKind::LayerNorm,
        norm_eps: m
            .opt_f64("gpt2.attention.layer_norm_epsilon")?
            .unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Learned,
        // GPT-2's `gelu_new`; GGUF has no key for it.
        act: Activation::GeluTanh,
        gated_mlp: false,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: !m.has_tensor("output.weight"),
        extras: Default::default(),
    })
}

fn tensors(m: &Meta, config: &ModelConfig) -> TensorMap {
    let mut t = TensorMap::default();
    t.push(Mapped::as_is("embed.W_E", "token_embd.weight"));
    t.push(Mapped::as_is("pos_embed.W_pos", "position_embd.weight"));
    t.fused_qkv_layers(|n: &str| m.has_tensor(n), config);
    t.final_norm_and_unembed(config.tied_unembed, true);
    t
}
