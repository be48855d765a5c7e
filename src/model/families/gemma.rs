//! Gemma 1, 2 and 3 (text): `model_type` `gemma`, `gemma2`, `gemma3_text`.
//!
//! All three are Llama-shaped (gated MLP, rotary, RMSNorm, no biases) with:
//! - RMSNorm scaling by `1 + w` (the checkpoint stores `w`): folded into the
//!   weights at build time through `norm_weight_offset`, so `ln1.w` etc. are
//!   the effective scales TransformerLens shows;
//! - the token embedding multiplied by `sqrt(d_model)` rounded to the
//!   embedding dtype (so `hook_embed` is the scaled embedding, as in
//!   TransformerLens), a tied unembedding, `d_head` independent of
//!   `d_model / n_heads`, GeGLU (`gelu_pytorch_tanh`).
//!
//! Gemma 2 adds, and Gemma 3 keeps:
//! - a norm on the attention output and one on the MLP output before each
//!   joins the residual stream (`ln1_post`, `ln2_post`). Their outputs are
//!   `hook_attn_out` and `hook_mlp_out`, as in TransformerLens (its
//!   HookedTransformer applied `ln1_post` before `hook_attn_out`; its
//!   TransformerBridge re-points `hook_attn_out` to `ln1_post.hook_out`), so
//!   `resid_mid = resid_pre + attn_out` and `resid_post = resid_mid +
//!   mlp_out` still hold and patching `attn_out` patches what the block adds;
//! - note the renaming: Gemma 2's `post_attention_layernorm` is that output
//!   norm (`ln1_post`), and the MLP's input norm is `pre_feedforward_layernorm`
//!   (`ln2`), where Gemma 1 and Llama call the MLP's input norm
//!   `post_attention_layernorm`;
//! - query scaling by `query_pre_attn_scalar^-0.5` instead of `d_head^-0.5`;
//! - soft-capping `cap * tanh(x / cap)` of attention scores (before the
//!   mask; `hook_attn_scores` sees the capped, masked scores; Gemma 2 only,
//!   as transformers' Gemma 3 ignores `attn_logit_softcapping`) and of the
//!   final logits (`final_logit_softcapping`: 30 on Gemma 2, none on Gemma 3);
//! - local (sliding-window) layers alternating with global ones: Gemma 2
//!   every other layer starting with a local one, Gemma 3 five local then
//!   one global (`sliding_window_pattern`), or whatever `layer_types` says.
//!
//! Gemma 3 adds RMSNorm (`1 + w` too) of each query and key head before
//! rotary, after `hook_q` / `hook_k` (TransformerLens hooks the projections),
//! and a separate rotary base for local layers (`rope_local_base_freq`,
//! 10000) while global layers use `rope_theta` (1e6) with any `rope_scaling`.

use serde_json::Value;

use super::{rope_from_hf, Cfg, Raw, RawWeights};
use crate::model::config::{
    Activation, AttnKind, Extras, ModelConfig, NormKind, Positions, RotaryConfig,
};
use crate::model::weights::CanonicalWeights;
use crate::model::ModelError;

/// Which Gemma: what each generation adds is switched on by comparing.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Gen {
    One,
    Two,
    Three,
}

fn generation(family: &str) -> Option<Gen> {
    match family {
        "gemma" => Some(Gen::One),
        "gemma2" => Some(Gen::Two),
        "gemma3_text" => Some(Gen::Three),
        _ => None,
    }
}

/// Whether `family` is one of the Gemma text models this file reads.
pub(super) fn is_gemma(family: &str) -> bool {
    generation(family).is_some()
}

/// A number that transformers defaults when the key is absent but that an
/// explicit `null` switches off (the soft-caps, the sliding window).
fn defaulted(c: &Cfg, key: &str, default: Option<f64>) -> Result<Option<f64>, ModelError> {
    match c.v.get(key) {
        None => Ok(default),
        Some(_) => c.opt_f64(key),
    }
}

/// Reads a Gemma `config.json` (transformers 4 or 5 layout).
pub(super) fn config(c: &Cfg, family: &str) -> Result<ModelConfig, ModelError> {
    let gen = generation(family).expect("config called for a Gemma family");
    if c.opt_bool("use_bidirectional_attention") == Some(true) {
        return Err(c.bad(
            "use_bidirectional_attention is true (an embedding model such as EmbeddingGemma); \
             patchbench runs causal language models only"
                .into(),
        ));
    }
    let d_model = c.positive("hidden_size")?;
    let n_heads = c.positive("num_attention_heads")?;
    let n_layers = c.positive("num_hidden_layers")?;
    // Every Gemma config names head_dim (256 on all released models); the
    // transformers default is 256 as well.
    let d_head = c.opt_usize("head_dim")?.unwrap_or(256);
    // Gemma 2/3 say `hidden_activation`; Gemma 1 configs on the hub say
    // `hidden_act: "gelu"`, which transformers reads as the tanh
    // approximation the models were trained with.
    let act_name = c
        .opt_str("hidden_activation")
        .or_else(|| c.opt_str("hidden_act"))
        .unwrap_or("gelu_pytorch_tanh");
    let act = match act_name {
        "gelu" => Activation::GeluTanh,
        other => Activation::from_hf(other)
            .ok_or_else(|| c.bad(format!("unknown hidden_activation {other:?}")))?,
    };
    let (positions, local_rotary) = rotary(c, gen, d_head)?;
    let attn_scale = match gen {
        Gen::One => 1.0 / (d_head as f64).sqrt(),
        _ => {
            let s = c.opt_f64("query_pre_attn_scalar")?.unwrap_or(256.0);
            if !(s.is_finite() && s > 0.0) {
                return Err(c.bad(format!(
                    "query_pre_attn_scalar is {s}; it must be a positive number (usually d_head)"
                )));
            }
            s.powf(-0.5)
        }
    };
    let extras = match gen {
        Gen::One => Extras::default(),
        _ => {
            let (attn_cap, final_cap) = match gen {
                Gen::Two => (Some(50.0), Some(30.0)),
                _ => (None, None),
            };
            let window = defaulted(c, "sliding_window", Some(4096.0))?;
            Extras {
                post_norms: true,
                qk_norm: gen == Gen::Three,
                // transformers' Gemma 3 attention never passes its
                // `attn_logit_softcapping` on (llama.cpp ignores it too), so
                // neither does patchbench: the logits must stay theirs.
                attn_softcap: match gen {
                    Gen::Three => None,
                    _ => defaulted(c, "attn_logit_softcapping", attn_cap)?,
                },
                final_softcap: defaulted(c, "final_logit_softcapping", final_cap)?,
                sliding_window: window.map(|w| w as usize),
                layer_attn: layer_kinds(c, gen, n_layers)?,
                local_rotary,
            }
        }
    };
    Ok(ModelConfig {
        family: family.to_string(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: c.opt_usize("num_key_value_heads")?.unwrap_or(n_heads),
        d_head,
        d_mlp: c.usize("intermediate_size")?,
        d_vocab: c.usize("vocab_size")?,
        n_ctx: c.opt_usize("max_position_embeddings")?.unwrap_or(8192),
        norm: NormKind::RmsNorm,
        norm_eps: c.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
        norm_weight_offset: 1.0,
        positions,
        act,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: Some((d_model as f64).sqrt() as f32),
        attn_scale: attn_scale as f32,
        tied_unembed: c.opt_bool("tie_word_embeddings").unwrap_or(true),
        extras,
    })
}

/// The global rotary and, for Gemma 3, the local one. transformers 5
/// writes Gemma 3's as `rope_parameters: {full_attention: {..},
/// sliding_attention: {..}}`; hub configs say `rope_theta`, `rope_scaling`
/// (global only) and `rope_local_base_freq`.
fn rotary(
    c: &Cfg,
    gen: Gen,
    d_head: usize,
) -> Result<(Positions, Option<RotaryConfig>), ModelError> {
    if gen < Gen::Three {
        return Ok((Positions::Rotary(rope_from_hf(c, 10000.0, d_head)?), None));
    }
    let nested =
        c.v.get("rope_parameters")
            .filter(|p| p.get("full_attention").is_some() || p.get("sliding_attention").is_some());
    let (global, local) = match nested {
        Some(p) => {
            let one = |kind: &str, default: f64| {
                let v = serde_json::json!({ "rope_parameters": p.get(kind).cloned().unwrap_or(Value::Null) });
                rope_from_hf(
                    &Cfg {
                        v: &v,
                        origin: c.origin,
                    },
                    default,
                    d_head,
                )
            };
            (one("full_attention", 1e6)?, one("sliding_attention", 1e4)?)
        }
        None => {
            let global = rope_from_hf(c, 1e6, d_head)?;
            let local = RotaryConfig {
                theta: c.opt_f64("rope_local_base_freq")?.unwrap_or(1e4),
                scaling: None,
                ..global.clone()
            };
            (global, local)
        }
    };
    Ok((Positions::Rotary(global), Some(local)))
}

/// Each layer's attention kind: `layer_types` when given, else the
/// generation's pattern (Gemma 2: local first, alternating; Gemma 3:
/// `sliding_window_pattern - 1` local layers, then a global one).
fn layer_kinds(c: &Cfg, gen: Gen, n_layers: usize) -> Result<Vec<AttnKind>, ModelError> {
    if let Some(types) = c.v.get("layer_types").and_then(Value::as_array) {
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(AttnKind::Local),
                Some("full_attention") => Ok(AttnKind::Global),
                _ => Err(c.bad(format!(
                    "layer_types entry {t} is not \"sliding_attention\" or \"full_attention\""
                ))),
            })
            .collect();
    }
    let pattern = match gen {
        Gen::Two => 2,
        _ => c.opt_usize("sliding_window_pattern")?.unwrap_or(6),
    };
    if pattern == 0 {
        return Err(c.bad("sliding_window_pattern is 0; it must be at least 1".into()));
    }
    Ok((0..n_layers)
        .map(|i| {
            if (i + 1) % pattern != 0 {
                AttnKind::Local
            } else {
                AttnKind::Global
            }
        })
        .collect())
}

/// Renames a Gemma checkpoint into canonical weights.
pub(super) fn map(
    cfg: &ModelConfig,
    raw: RawWeights,
    origin: &str,
) -> Result<CanonicalWeights, ModelError> {
    let mut map = raw;
    if cfg.tied_unembed {
        map.remove("lm_head.weight");
    }
    map.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    let post_norms = cfg.extras.post_norms;
    let mut r = Raw { map, origin };
    let mut w = CanonicalWeights::new(origin);
    w.insert("embed.W_E", r.take("model.embed_tokens.weight")?);
    for l in 0..cfg.n_layers {
        let (h, b) = (format!("model.layers.{l}"), format!("blocks.{l}"));
        let mut norm = |ours: &str, theirs: &str| -> Result<(), ModelError> {
            w.insert(
                format!("{b}.{ours}.w"),
                r.take(&format!("{h}.{theirs}.weight"))?,
            );
            Ok(())
        };
        norm("ln1", "input_layernorm")?;
        if post_norms {
            norm("ln1_post", "post_attention_layernorm")?;
            norm("ln2", "pre_feedforward_layernorm")?;
            norm("ln2_post", "post_feedforward_layernorm")?;
        } else {
            norm("ln2", "post_attention_layernorm")?;
        }
        if cfg.extras.qk_norm {
            norm("attn.q_norm", "self_attn.q_norm")?;
            norm("attn.k_norm", "self_attn.k_norm")?;
        }
        r.llama_projections(&mut w, &h, &b)?;
    }
    w.insert("ln_final.w", r.take("model.norm.weight")?);
    if !cfg.tied_unembed {
        w.insert("unembed.W_U", r.linear_t("lm_head.weight")?);
    }
    r.finish(w)
}
