//! `general.architecture = llama` (Llama, Mistral, SmolLM2 and other
//! Llama-shaped models converted by llama.cpp).
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that
//! rotary embedding can rotate adjacent pairs; the mapping asks for that
//! permutation to be undone ([`Layout::LinearUnpermuted`]) and the config
//! uses the same half-split rotary as the Hugging Face model, so a GGUF model
//! and its Hugging Face original give the same activations at every hook.

use super::mapping::{Layout, Mapped, TensorMap, VO_AND_GATED_MLP};
use super::meta::Meta;
use super::tensors::ConfigTensors;
use super::Architecture;
use crate::model::config::{
    Activation, ModelConfig, NormKind, Positions, RopeScaling, RotaryConfig, RotaryStyle,
};
use crate::model::ModelError;

pub const ARCH: Architecture = Architecture {
    name: "llama",
    config: |m, data| llama_like_config(m, data, "llama"),
    tensors: |m, config| Ok(llama_like_tensors(m, config, true)),
};

const ROPE_FREQS: &str = "rope_freqs.weight";

/// The config of the Llama-shaped architectures (`llama`, `qwen2`), from
/// `{arch}.*` metadata and the embedding's shape.
pub(super) fn llama_like_config(
    m: &Meta,
    data: &mut dyn ConfigTensors,
    arch: &str,
) -> Result<ModelConfig, ModelError> {
    let key = |k: &str| format!("{arch}.{k}");
    let d_model = m.positive(&key("embedding_length"))?;
    let n_heads = m.positive(&key("attention.head_count"))?;
    let n_kv_heads = m
        .opt_usize(&key("attention.head_count_kv"))?
        .unwrap_or(n_heads);
    let d_head = m.d_head(arch, d_model, n_heads)?;
    let rotary_dim = m.opt_usize(&key("rope.dimension_count"))?.unwrap_or(d_head);
    let scaling = rope_scaling(m, data, arch, rotary_dim)?;
    Ok(ModelConfig {
        family: arch.into(),
        n_layers: m.positive(&key("block_count"))?,
        d_model,
        n_heads,
        n_kv_heads,
        d_head,
        d_mlp: m.usize(&key("feed_forward_length"))?,
        d_vocab: m.d_vocab(d_model)?,
        n_ctx: m.opt_usize(&key("context_length"))?.unwrap_or(2048),
        norm: NormKind::RmsNorm,
        norm_eps: m
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(RotaryConfig {
            theta: m.opt_f64(&key("rope.freq_base"))?.unwrap_or(10000.0),
            rotary_dim,
            style: RotaryStyle::NeoX,
            scaling,
        }),
        act: Activation::Silu,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: !m.has_tensor("output.weight"),
        extras: Default::default(),
    })
}

/// Linear scaling from metadata, or Llama 3.1's per-frequency divisors,
/// which llama.cpp's converter stores as the `rope_freqs` tensor (one per
/// rotated pair) instead of the rope-scaling parameters.
fn rope_scaling(
    m: &Meta,
    data: &mut dyn ConfigTensors,
    arch: &str,
    rotary_dim: usize,
) -> Result<Option<RopeScaling>, ModelError> {
    if let Some(dims) = m.tensor_dims(ROPE_FREQS) {
        // Checked from the header before anything is read or allocated.
        if dims.iter().product::<usize>() != rotary_dim / 2 {
            return Err(m.bad(format!(
                "{ROPE_FREQS} has shape {dims:?}; it must hold one factor per rotated pair \
                 ({} for {arch}.rope.dimension_count {rotary_dim})",
                rotary_dim / 2
            )));
        }
        let factors = data.f32s(m, ROPE_FREQS)?;
        return Ok(Some(RopeScaling::Factors {
            factors: factors.into_iter().map(f64::from).collect(),
        }));
    }
    Ok(
        match m.opt_str(&format!("{arch}.rope.scaling.type")).as_deref() {
            None | Some("none") => None,
            Some("linear") => Some(RopeScaling::Linear {
                factor: m
                    .opt_f64(&format!("{arch}.rope.scaling.factor"))?
                    .unwrap_or(1.0),
            }),
            Some(other) => {
                return Err(m.bad(format!(
                    "rope scaling {other:?} ({arch}.rope.scaling.type) is not supported in GGUF \
                     (none, linear and Llama 3.1's rope_freqs are)"
                )))
            }
        },
    )
}

/// Llama-shaped tensors. `permuted`: Q and K rows are in llama.cpp's
/// rotary order (the `llama` converter permutes them; `qwen2`'s does not).
/// Biases the file has are mapped (Qwen2's q/k/v); with permuted rows a
/// Q/K bias would be permuted too, and is left unmapped so loading fails
/// naming it rather than using it in the wrong order.
pub(super) fn llama_like_tensors(m: &Meta, config: &ModelConfig, permuted: bool) -> TensorMap {
    let has = |n: &str| m.has_tensor(n);
    let mut t = TensorMap::default();
    if m.has_tensor(ROPE_FREQS) {
        t.consumed.push(ROPE_FREQS.into());
    }
    t.push(Mapped::as_is("embed.W_E", "token_embd.weight"));
    for l in 0..config.n_layers {
        let (g, b) = (format!("blk.{l}"), format!("blocks.{l}"));
        t.norm(&format!("{b}.ln1"), &format!("{g}.attn_norm"), false);
        t.norm(&format!("{b}.ln2"), &format!("{g}.ffn_norm"), false);
        for (n, heads, theirs) in [
            ("Q", config.n_heads, "attn_q"),
            ("K", config.n_kv_heads, "attn_k"),
        ] {
            if permuted {
                t.push(Mapped::new(
                    format!("{b}.attn.W_{n}"),
                    format!("{g}.{theirs}.weight"),
                    Layout::LinearUnpermuted { heads },
                ));
            } else {
                t.linear_bias(has, &format!("{b}.attn.{n}"), &format!("{g}.{theirs}"));
            }
        }
        t.linears_bias(has, &b, &g, &VO_AND_GATED_MLP);
    }
    t.final_norm_and_unembed(config.tied_unembed, false);
    t
}
