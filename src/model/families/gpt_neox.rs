//! GPT-NeoX (Pythia): LayerNorm with biases, partial rotary, one fused QKV
//! projection, and attention and MLP reading the same residual when
//! `use_parallel_residual` is set.

use candle_core::Tensor;

use super::{rope_from_hf, Cfg, Raw, RawWeights};
use crate::model::config::{Activation, ModelConfig, NormKind, Positions};
use crate::model::weights::CanonicalWeights;
use crate::model::ModelError;

/// Reads a GPT-NeoX `config.json`, in either the transformers 4 spelling
/// (`rotary_pct`, `rotary_emb_base`) or the transformers 5 one
/// (`rope_parameters` with `rope_theta` and `partial_rotary_factor`).
pub(super) fn config(c: &Cfg) -> Result<ModelConfig, ModelError> {
    let d_model = c.positive("hidden_size")?;
    let n_heads = c.positive("num_attention_heads")?;
    let d_head = c.head_dim(d_model, n_heads, "hidden_size / num_attention_heads")?;
    let act_name = c.opt_str("hidden_act").unwrap_or("gelu");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| c.bad(format!("unknown hidden_act {act_name:?}")))?;
    let pct = rotary_fraction(c)?;
    if !(pct > 0.0 && pct <= 1.0) {
        return Err(c.bad(format!(
            "rotary fraction {pct} must be in (0, 1] (rotary_pct / partial_rotary_factor)"
        )));
    }
    // transformers truncates `d_head * fraction` to an integer the same way.
    let rotary_dim = (d_head as f64 * pct) as usize;
    let theta = c.opt_f64("rotary_emb_base")?.unwrap_or(10000.0);
    Ok(ModelConfig {
        family: "gpt_neox".into(),
        n_layers: c.usize("num_hidden_layers")?,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: c
            .opt_usize("intermediate_size")?
            .unwrap_or(d_model.saturating_mul(4)),
        d_vocab: c.usize("vocab_size")?,
        n_ctx: c.opt_usize("max_position_embeddings")?.unwrap_or(2048),
        norm: NormKind::LayerNorm,
        norm_eps: c.opt_f64("layer_norm_eps")?.unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(rope_from_hf(c, theta, rotary_dim)?),
        act,
        gated_mlp: false,
        parallel_attn_mlp: c.opt_bool("use_parallel_residual").unwrap_or(true),
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: c.opt_bool("tie_word_embeddings").unwrap_or(false),
        extras: Default::default(),
    })
}

/// The share of each head's dimensions that rotary rotates; transformers
/// looks in `rope_parameters` first, then the older top-level names, and
/// defaults to a quarter.
fn rotary_fraction(c: &Cfg) -> Result<f64, ModelError> {
    let nested =
        c.v.get("rope_parameters")
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(serde_json::Value::as_f64);
    if let Some(f) = nested {
        return Ok(f);
    }
    Ok(c.opt_f64("partial_rotary_factor")?
        .or(c.opt_f64("rotary_pct")?)
        .unwrap_or(0.25))
}

/// Renames a GPT-NeoX checkpoint into canonical weights.
pub(super) fn map(
    cfg: &ModelConfig,
    raw: RawWeights,
    origin: &str,
) -> Result<CanonicalWeights, ModelError> {
    let mut map = raw;
    // Causal-mask and rotary buffers that older exports saved alongside the
    // parameters; patchbench rebuilds both from the config.
    map.retain(|k, _| {
        !(k.ends_with(".attention.bias")
            || k.ends_with(".attention.masked_bias")
            || k.ends_with("rotary_emb.inv_freq"))
    });
    // transformers 5 calls the unembedding `lm_head` in memory but saves it
    // as `embed_out`, the name hub checkpoints use.
    let unembed = "embed_out.weight";
    if cfg.tied_unembed {
        map.remove(unembed);
    }
    // `attention_bias: false` checkpoints have no QKV or output bias; the
    // first layer decides, and every later layer must then agree.
    let attention_bias = map.contains_key("gpt_neox.layers.0.attention.query_key_value.bias");
    let mut r = Raw { map, origin };
    let mut w = CanonicalWeights::new(origin);
    let (h, dh) = (cfg.n_heads, cfg.d_head);
    w.insert("embed.W_E", r.take("gpt_neox.embed_in.weight")?);
    for l in 0..cfg.n_layers {
        let (p, b) = (format!("gpt_neox.layers.{l}"), format!("blocks.{l}"));
        for (ours, theirs) in [
            ("ln1", "input_layernorm"),
            ("ln2", "post_attention_layernorm"),
        ] {
            r.layer_norm(&mut w, &format!("{b}.{ours}"), &format!("{p}.{theirs}"))?;
        }
        // The fused projection's output rows run head by head, and within a
        // head as query, key, value: `[n_heads, 3, d_head]`.
        let qkv = r.take(&format!("{p}.attention.query_key_value.weight"))?;
        let d_in = qkv.dim(1)?;
        let qkv = qkv.reshape((h, 3, dh, d_in))?;
        let qkv_b = if attention_bias {
            Some(
                r.take(&format!("{p}.attention.query_key_value.bias"))?
                    .reshape((h, 3, dh))?,
            )
        } else {
            None
        };
        for (i, n) in ["Q", "K", "V"].iter().enumerate() {
            let part = qkv.narrow(1, i, 1)?.reshape((h * dh, d_in))?;
            w.insert(format!("{b}.attn.W_{n}"), part.t()?.contiguous()?);
            if let Some(bias) = &qkv_b {
                let part: Tensor = bias.narrow(1, i, 1)?.reshape(h * dh)?;
                w.insert(format!("{b}.attn.b_{n}"), part.contiguous()?);
            }
        }
        w.insert(
            format!("{b}.attn.W_O"),
            r.linear_t(&format!("{p}.attention.dense.weight"))?,
        );
        if attention_bias {
            w.insert(
                format!("{b}.attn.b_O"),
                r.take(&format!("{p}.attention.dense.bias"))?,
            );
        }
        for (ours, theirs) in [("in", "dense_h_to_4h"), ("out", "dense_4h_to_h")] {
            w.insert(
                format!("{b}.mlp.W_{ours}"),
                r.linear_t(&format!("{p}.mlp.{theirs}.weight"))?,
            );
            w.insert(
                format!("{b}.mlp.b_{ours}"),
                r.take(&format!("{p}.mlp.{theirs}.bias"))?,
            );
        }
    }
    r.layer_norm(&mut w, "ln_final", "gpt_neox.final_layer_norm")?;
    if !cfg.tied_unembed {
        w.insert("unembed.W_U", r.linear_t(unembed)?);
    }
    r.finish(w)
}
