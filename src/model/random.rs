//! `random:<preset>[@seed]`: seeded random weights in the shape of a real
//! model, for benchmarks and tests that need no download.
//!
//! Weights are drawn N(0, 0.02) like GPT-2's initialisation (norm weights
//! 1, biases 0) from a seeded generator, so the same source string always
//! yields the same model. Each preset carries a real tokenizer of its family.
//!
//! Weights are generated one tensor at a time and converted at once to the
//! `--weights` mode (bf16/f16, or Q4_0 blocks for `quantized`), so a
//! 7B-shape preset never exists in f32: the largest transient is one f32
//! matrix. The same seed gives the same draws in every mode, so a
//! quantized or half-precision preset is its f32 twin rounded.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::config::{Activation, ModelConfig, NormKind, Positions, RotaryConfig, RotaryStyle};
use super::precision::WeightsMode;
use super::quantized::{quantize_canonical, RANDOM_QUANT};
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
    (
        "llama-2-7b",
        "Llama-2-7B shape: 32 layers, d_model 4096, 32 heads, d_mlp 11008, untied (6.9B with the SmolLM2 \
         vocabulary of 49152); use --weights quantized (about 4.5 GB) or bf16 (about 14 GB)",
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
        extras: Default::default(),
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
        extras: Default::default(),
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
        // Llama 2's own vocabulary is 32000; the preset keeps the embedded
        // SmolLM2 tokenizer, so its embeddings have 49152 rows.
        "llama-2-7b" => ModelConfig {
            tied_unembed: false,
            ..llama(32, 4096, 32, 32, 11008, 10000.0, 4096)
        },
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

/// Seeded random canonical weights for `cfg`, held as `mode` says.
pub fn random_weights_as(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
    mode: WeightsMode,
) -> Result<CanonicalWeights, ModelError> {
    check_memory(cfg, mode)?;
    generate(cfg, seed, device, mode.dtype(), mode.is_quantized())
}

/// Seeded random canonical float weights for `cfg` in `dtype` (f64 too,
/// for gradient checks).
pub fn random_weights(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<CanonicalWeights, ModelError> {
    generate(cfg, seed, device, dtype, false)
}

fn generate(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
    quantize: bool,
) -> Result<CanonicalWeights, ModelError> {
    let mut g = Draws {
        rng: StdRng::seed_from_u64(seed),
        device,
        dtype,
        quantize,
    };
    let mut w = CanonicalWeights::new(format!("random weights (seed {seed})"));
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
    w.insert("embed.W_E", g.normal(&[cfg.d_vocab, d])?);
    if cfg.positions == Positions::Learned {
        w.insert("pos_embed.W_pos", g.normal(&[cfg.n_ctx, d])?);
    }
    for l in 0..cfg.n_layers {
        let b = format!("blocks.{l}");
        for ln in ["ln1", "ln2"] {
            w.insert(format!("{b}.{ln}.w"), ones(d)?);
            if layer_norm {
                w.insert(format!("{b}.{ln}.b"), zeros(d)?);
            }
        }
        g.matrix(&mut w, format!("{b}.attn.W_Q"), d, h * dh)?;
        g.matrix(&mut w, format!("{b}.attn.W_K"), d, hkv * dh)?;
        g.matrix(&mut w, format!("{b}.attn.W_V"), d, hkv * dh)?;
        g.matrix(&mut w, format!("{b}.attn.W_O"), h * dh, d)?;
        g.matrix(&mut w, format!("{b}.mlp.W_in"), d, dm)?;
        if cfg.gated_mlp {
            g.matrix(&mut w, format!("{b}.mlp.W_gate"), d, dm)?;
        }
        g.matrix(&mut w, format!("{b}.mlp.W_out"), dm, d)?;
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
        w.insert("unembed.W_U", g.normal(&[d, cfg.d_vocab])?);
    }
    Ok(w)
}

/// One seeded stream of N(0, 0.02) draws, made on the CPU in f32 one
/// tensor at a time and converted at once.
struct Draws<'a> {
    rng: StdRng,
    device: &'a Device,
    /// Of float weights.
    dtype: DType,
    /// Projection matrices quantized to [`RANDOM_QUANT`].
    quantize: bool,
}

impl Draws<'_> {
    fn draw(&mut self, shape: &[usize]) -> Result<Tensor, ModelError> {
        let n: usize = shape.iter().product();
        let rng = &mut self.rng;
        let v: Vec<f32> = (0..n)
            .map(|_| 0.02 * rng.sample::<f32, _>(StandardNormal))
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    /// A float tensor in the activations' dtype.
    fn normal(&mut self, shape: &[usize]) -> Result<Tensor, ModelError> {
        Ok(self
            .draw(shape)?
            .to_device(self.device)?
            .to_dtype(self.dtype)?)
    }

    /// A projection `[d_in, d_out]`: float, or quantized as soon as drawn.
    fn matrix(
        &mut self,
        w: &mut CanonicalWeights,
        name: String,
        d_in: usize,
        d_out: usize,
    ) -> Result<(), ModelError> {
        if self.quantize {
            let t = self.draw(&[d_in, d_out])?;
            w.insert_quantized(name, quantize_canonical(&t, RANDOM_QUANT, self.device)?);
        } else {
            let t = self.normal(&[d_in, d_out])?;
            w.insert(name, t);
        }
        Ok(())
    }
}

/// Refuses a preset the machine cannot hold in `mode` before a minute is
/// spent drawing it (a 7B preset is 28 GB in f32).
fn check_memory(cfg: &ModelConfig, mode: WeightsMode) -> Result<(), ModelError> {
    let (d, dm) = (cfg.d_model as u128, cfg.d_mlp as u128);
    let q = (cfg.n_heads * cfg.d_head) as u128;
    let kv = (cfg.n_kv_heads * cfg.d_head) as u128;
    let gates = if cfg.gated_mlp { 3 } else { 2 };
    let matrices = cfg.n_layers as u128 * (d * (2 * q + 2 * kv) + gates * d * dm);
    let tables = cfg.d_vocab as u128 * d * if cfg.tied_unembed { 1 } else { 2 };
    let float = mode.dtype().size_in_bytes() as u128;
    // Q4_0: 18 bytes per block of 32 weights.
    let bytes = match mode {
        WeightsMode::Quantized => matrices * 18 / 32 + tables * float,
        _ => (matrices + tables) * float,
    };
    crate::util::mem::check_bytes(&format!("random weights in {mode}"), bytes).map_err(|e| {
        ModelError::Source(format!(
            "{e}; --weights quantized (Q4_0) or bf16 need far less than f32"
        ))
    })
}
