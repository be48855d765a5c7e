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

use super::config::{
    Activation, AttnKind, Extras, ModelConfig, NormKind, Positions, RotaryConfig, RotaryStyle,
};
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
    (
        "gemma-2-2b",
        "Gemma-2-2B shape: 26 layers, d_model 2304, GQA 8/4 heads of 256, d_mlp 9216, vocabulary \
         256000, alternating sliding-window (4096) and global layers, soft-capping, post-norms \
         (2.6B; SmolLM2 tokenizer); about 5.2 GB in bf16",
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

/// Gemma 2 2B's shape and every Gemma 2 mechanism: GeGLU, RMSNorm with
/// the +1 offset, embeddings scaled by √d_model, post-attention and
/// post-MLP norms, soft-capped attention (50) and final (30) logits,
/// local (window 4096) and global layers alternating, queries scaled by
/// `query_pre_attn_scalar` 256, tied unembedding.
fn gemma2_2b() -> ModelConfig {
    let (n_layers, d_model, d_head) = (26, 2304, 256);
    let layer_attn = (0..n_layers)
        .map(|l| {
            if l % 2 == 0 {
                AttnKind::Local
            } else {
                AttnKind::Global
            }
        })
        .collect();
    ModelConfig {
        family: "gemma2".into(),
        n_layers,
        d_model,
        n_heads: 8,
        n_kv_heads: 4,
        d_head,
        d_mlp: 9216,
        d_vocab: 256000,
        n_ctx: 8192,
        norm: NormKind::RmsNorm,
        norm_eps: 1e-6,
        norm_weight_offset: 1.0,
        positions: Positions::Rotary(RotaryConfig {
            theta: 10000.0,
            rotary_dim: d_head,
            style: RotaryStyle::NeoX,
            scaling: None,
        }),
        act: Activation::GeluTanh,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: Some((d_model as f32).sqrt()),
        attn_scale: 1.0 / 256f32.sqrt(),
        tied_unembed: true,
        extras: Extras {
            post_norms: true,
            qk_norm: false,
            attn_softcap: Some(50.0),
            final_softcap: Some(30.0),
            sliding_window: Some(4096),
            layer_attn,
            local_rotary: None,
        },
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
        "gemma-2-2b" => gemma2_2b(),
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
    let zeros = |n: usize| -> Result<Tensor, ModelError> { Ok(Tensor::zeros(n, dtype, device)?) };
    // A norm scales by `weight + norm_weight_offset`; the stored weight
    // makes that 1 (Gemma stores 0 for an identity scale).
    let unit = |n: usize| -> Result<Tensor, ModelError> {
        let t = Tensor::ones(n, DType::F32, &Device::Cpu)?;
        let t = (t - f64::from(cfg.norm_weight_offset))?;
        Ok(t.to_device(device)?.to_dtype(dtype)?)
    };
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
        let mut norms = vec![("ln1", d), ("ln2", d)];
        if cfg.extras.post_norms {
            norms.extend([("ln1_post", d), ("ln2_post", d)]);
        }
        if cfg.extras.qk_norm {
            norms.extend([("attn.q_norm", dh), ("attn.k_norm", dh)]);
        }
        for (ln, size) in norms {
            w.insert(format!("{b}.{ln}.w"), unit(size)?);
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
    w.insert("ln_final.w", unit(d)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ForwardOptions, HookSpec, Transformer};

    /// The Gemma-2-2B preset's mechanisms at toy size: every weight the
    /// forward pass needs is drawn (post-norms included), the norms start
    /// as identities under Gemma's +1 offset, and the final soft-cap holds.
    #[test]
    fn gemma2_preset_weights_run_forward() {
        let full = preset_config("gemma-2-2b").unwrap();
        assert_eq!(full.d_head * full.n_heads, 2048);
        assert!(full.extras.is_local(0) && !full.extras.is_local(1));
        let cfg = ModelConfig {
            n_layers: 2,
            d_model: 32,
            n_heads: 4,
            n_kv_heads: 2,
            d_head: 8,
            d_mlp: 64,
            d_vocab: 300,
            n_ctx: 64,
            positions: Positions::Rotary(RotaryConfig {
                theta: 10000.0,
                rotary_dim: 8,
                style: RotaryStyle::NeoX,
                scaling: None,
            }),
            extras: Extras {
                sliding_window: Some(3),
                layer_attn: vec![AttnKind::Local, AttnKind::Global],
                ..full.extras.clone()
            },
            ..full
        };
        let mut w = random_weights(&cfg, 7, &Device::Cpu, DType::F32).unwrap();
        let ln = w.take("blocks.1.ln2_post.w", &[32]).unwrap();
        let v: Vec<f32> = ln.to_vec1().unwrap();
        assert!(v.iter().all(|&x| x == 0.0), "Gemma stores 0 for scale 1");
        w.insert("blocks.1.ln2_post.w", ln);
        let model = Transformer::new(cfg, w).unwrap();
        let ids = Tensor::new(&[[1u32, 5, 9, 2, 7, 3]], &Device::Cpu).unwrap();
        let out = model
            .forward(Some(&ids), &HookSpec::default(), &ForwardOptions::default())
            .unwrap();
        let logits: Vec<f32> = out
            .logits
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(logits.iter().all(|x| x.is_finite() && x.abs() <= 30.0));
        assert!(logits.iter().any(|x| x.abs() > 1e-3));
    }
}
