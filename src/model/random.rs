//! `random:<preset>[@seed]`: seeded random weights in the shape of a real
//! model, for benchmarks and tests that need no download.
//!
//! Weights are drawn N(0, 0.02) like GPT-2's initialisation (norm weights
//! 1, biases 0) from a seeded generator, so the same source string always
//! yields the same model. Each preset carries a real tokenizer of its family.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::config::{Activation, ModelConfig, NormKind, Positions, RotaryConfig, RotaryStyle};
use super::tokenizer::Tokenizer;
use super::weights::CanonicalWeights;
use super::ModelError;

static SMOLLM2_TOKENIZER: &[u8] = include_bytes!("../../assets/smollm2/tokenizer.json");

/// Preset names with one-line descriptions.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "gpt2-tiny",
        "GPT-2 architecture, 2 layers, d_model 64, GPT-2 tokenizer",
    ),
    (
        "gpt2-small",
        "GPT-2 small shape: 12 layers, d_model 768, 12 heads (124M)",
    ),
    (
        "gpt2-medium",
        "GPT-2 medium shape: 24 layers, d_model 1024, 16 heads (355M)",
    ),
    (
        "llama-tiny",
        "Llama architecture, 2 layers, d_model 64, GQA 4/2 heads, SmolLM2 tokenizer",
    ),
    (
        "smollm2-135m",
        "SmolLM2-135M shape: 30 layers, d_model 576, GQA 9/3 heads",
    ),
];

fn gpt2(n_layers: usize, d_model: usize, n_heads: usize, n_ctx: usize) -> ModelConfig {
    ModelConfig {
        family: "gpt2".into(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head: d_model / n_heads,
        d_mlp: 4 * d_model,
        d_vocab: 50257,
        n_ctx,
        norm: NormKind::LayerNorm,
        norm_eps: 1e-5,
        norm_weight_offset: 0.0,
        positions: Positions::Learned,
        act: Activation::GeluTanh,
        gated_mlp: false,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / ((d_model / n_heads) as f32).sqrt(),
        tied_unembed: true,
    }
}

#[allow(clippy::too_many_arguments)]
fn llama(
    n_layers: usize,
    d_model: usize,
    n_heads: usize,
    n_kv: usize,
    d_mlp: usize,
    theta: f64,
    n_ctx: usize,
) -> ModelConfig {
    let d_head = d_model / n_heads;
    ModelConfig {
        family: "llama".into(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: n_kv,
        d_head,
        d_mlp,
        d_vocab: 49152,
        n_ctx,
        norm: NormKind::RmsNorm,
        norm_eps: 1e-5,
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(RotaryConfig {
            theta,
            rotary_dim: d_head,
            style: RotaryStyle::NeoX,
            scaling: None,
        }),
        act: Activation::Silu,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: true,
    }
}

/// The config of a preset, or an error listing the presets.
pub fn preset_config(name: &str) -> Result<ModelConfig, ModelError> {
    Ok(match name {
        "gpt2-tiny" => gpt2(2, 64, 4, 256),
        "gpt2-small" => gpt2(12, 768, 12, 1024),
        "gpt2-medium" => gpt2(24, 1024, 16, 1024),
        "llama-tiny" => llama(2, 64, 4, 2, 128, 10000.0, 512),
        "smollm2-135m" => llama(30, 576, 9, 3, 1536, 100000.0, 8192),
        other => {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(ModelError::Source(format!(
                "unknown random preset {other:?}; presets are: {}",
                names.join(", ")
            )));
        }
    })
}

/// The tokenizer a preset ships with.
pub fn preset_tokenizer(cfg: &ModelConfig) -> Result<Tokenizer, ModelError> {
    Ok(match cfg.family.as_str() {
        "gpt2" => Tokenizer::gpt2(),
        _ => Tokenizer::from_json_bytes(SMOLLM2_TOKENIZER, "embedded SmolLM2 tokenizer")?,
    })
}

/// Seeded random canonical weights for `cfg`.
pub fn random_weights(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<CanonicalWeights, ModelError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = CanonicalWeights::new(format!("random weights (seed {seed})"));
    let mut normal = |shape: &[usize]| -> Result<Tensor, ModelError> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| 0.02 * rng.sample::<f32, _>(StandardNormal))
            .collect();
        Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
    };
    let ones = |n: usize| -> Result<Tensor, ModelError> { Ok(Tensor::ones(n, dtype, device)?) };
    let zeros = |n: usize| -> Result<Tensor, ModelError> { Ok(Tensor::zeros(n, dtype, device)?) };
    let (d, dh, h, hkv, dm) = (
        cfg.d_model,
        cfg.d_head,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_mlp,
    );
    let layer_norm = cfg.norm == NormKind::LayerNorm;
    w.insert("embed.W_E", normal(&[cfg.d_vocab, d])?);
    if cfg.positions == Positions::Learned {
        w.insert("pos_embed.W_pos", normal(&[cfg.n_ctx, d])?);
    }
    for l in 0..cfg.n_layers {
        let b = format!("blocks.{l}");
        for ln in ["ln1", "ln2"] {
            w.insert(format!("{b}.{ln}.w"), ones(d)?);
            if layer_norm {
                w.insert(format!("{b}.{ln}.b"), zeros(d)?);
            }
        }
        w.insert(format!("{b}.attn.W_Q"), normal(&[d, h * dh])?);
        w.insert(format!("{b}.attn.W_K"), normal(&[d, hkv * dh])?);
        w.insert(format!("{b}.attn.W_V"), normal(&[d, hkv * dh])?);
        w.insert(format!("{b}.attn.W_O"), normal(&[h * dh, d])?);
        w.insert(format!("{b}.mlp.W_in"), normal(&[d, dm])?);
        if cfg.gated_mlp {
            w.insert(format!("{b}.mlp.W_gate"), normal(&[d, dm])?);
        }
        w.insert(format!("{b}.mlp.W_out"), normal(&[dm, d])?);
        if layer_norm {
            for (n, size) in [
                ("b_Q", h * dh),
                ("b_K", hkv * dh),
                ("b_V", hkv * dh),
                ("b_O", d),
                ("b_in", dm),
            ] {
                let group = if n.starts_with("b_in") { "mlp" } else { "attn" };
                w.insert(format!("{b}.{group}.{n}"), zeros(size)?);
            }
            w.insert(format!("{b}.mlp.b_out"), zeros(d)?);
        }
    }
    w.insert("ln_final.w", ones(d)?);
    if layer_norm {
        w.insert("ln_final.b", zeros(d)?);
    }
    if !cfg.tied_unembed {
        w.insert("unembed.W_U", normal(&[d, cfg.d_vocab])?);
    }
    Ok(w)
}
