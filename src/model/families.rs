//! Hugging Face families mapped onto the canonical transformer.
//!
//! Each family contributes two things: a reading of its `config.json` into a
//! [`ModelConfig`], and a renaming of its checkpoint tensors into canonical
//! names and `[d_in, d_out]` layouts ([`CanonicalWeights`]). Weights are kept
//! raw (no LayerNorm folding, no centring) so logits equal the reference
//! implementation's. Tensors a mapping does not consume are an error, so a
//! wrong mapping cannot pass silently.

use std::collections::HashMap;

use candle_core::Tensor;
use serde_json::Value;

use super::config::{
    Activation, ModelConfig, NormKind, Positions, RopeScaling, RotaryConfig, RotaryStyle,
};
use super::weights::CanonicalWeights;
use super::ModelError;

mod gemma;
mod gpt_neox;

/// The families `config_from_hf` understands, for error messages.
pub const SUPPORTED: &str = "gpt2, gpt_neox (Pythia), llama, mistral, qwen2, gemma, gemma2, \
     gemma3_text (and anything with their config and weight names)";

/// Raw checkpoint tensors by their original names.
pub type RawWeights = HashMap<String, Tensor>;

struct Cfg<'a> {
    v: &'a Value,
    origin: &'a str,
}

impl Cfg<'_> {
    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.bad(format!("missing integer field {key:?}")))
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.bad(format!(
                    "field {key:?} must be a non-negative integer, found {x}"
                ))
            }),
        }
    }
    /// A count something is divided by or sized with (heads, layers).
    fn positive(&self, key: &str) -> Result<usize, ModelError> {
        match self.usize(key)? {
            0 => Err(self.bad(format!("field {key:?} is 0; it must be a positive integer"))),
            n => Ok(n),
        }
    }
    /// `d_model / n_heads` where the family requires it to divide evenly.
    fn head_dim(&self, d_model: usize, n_heads: usize, keys: &str) -> Result<usize, ModelError> {
        if d_model % n_heads != 0 {
            return Err(self.bad(format!(
                "{keys}: {d_model} is not a multiple of {n_heads}, so the heads cannot split the model width"
            )));
        }
        Ok(d_model / n_heads)
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(format!("field {key:?} must be a number, found {x}"))),
        }
    }
    fn opt_bool(&self, key: &str) -> Option<bool> {
        self.v.get(key).and_then(Value::as_bool)
    }
    fn opt_str(&self, key: &str) -> Option<&str> {
        self.v.get(key).and_then(Value::as_str)
    }
    fn bad(&self, message: String) -> ModelError {
        ModelError::BadConfig {
            origin: self.origin.to_string(),
            message,
        }
    }
}

/// The family a `config.json` describes: `model_type`, else the architecture name.
pub fn family_of(v: &Value) -> String {
    if let Some(t) = v.get("model_type").and_then(Value::as_str) {
        return t.to_string();
    }
    let arch = v
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    match arch {
        a if a.starts_with("GPT2") => "gpt2",
        a if a.starts_with("GPTNeoXFor") => "gpt_neox",
        a if a.starts_with("Llama") => "llama",
        a if a.starts_with("Mistral") => "mistral",
        a if a.starts_with("Qwen2") => "qwen2",
        a if a.starts_with("Gemma3ForCausalLM") => "gemma3_text",
        a if a.starts_with("Gemma2") => "gemma2",
        a if a.starts_with("GemmaFor") => "gemma",
        _ => arch,
    }
    .to_string()
}

/// Reads a Hugging Face `config.json` into the canonical config.
pub fn config_from_hf(v: &Value, origin: &str) -> Result<ModelConfig, ModelError> {
    let c = Cfg { v, origin };
    let family = family_of(v);
    let cfg = match family.as_str() {
        "gpt2" => gpt2_config(&c)?,
        "gpt_neox" => gpt_neox::config(&c)?,
        "llama" | "mistral" | "qwen2" => llama_config(&c, &family)?,
        f if gemma::is_gemma(f) => gemma::config(&c, f)?,
        other => {
            return Err(ModelError::UnsupportedArchitecture {
                origin: origin.to_string(),
                arch: other.to_string(),
                supported: SUPPORTED.to_string(),
            })
        }
    };
    cfg.validate().map_err(|m| c.bad(m))?;
    Ok(cfg)
}

fn gpt2_config(c: &Cfg) -> Result<ModelConfig, ModelError> {
    let d_model = c.positive("n_embd")?;
    let n_heads = c.positive("n_head")?;
    if c.opt_bool("scale_attn_by_inverse_layer_idx") == Some(true) {
        return Err(c.bad("scale_attn_by_inverse_layer_idx is not supported".into()));
    }
    let act_name = c.opt_str("activation_function").unwrap_or("gelu_new");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| c.bad(format!("unknown activation_function {act_name:?}")))?;
    let n_ctx = match c.opt_usize("n_positions")? {
        Some(n) => n,
        None => c.usize("n_ctx")?,
    };
    let d_head = c.head_dim(d_model, n_heads, "n_embd / n_head")?;
    Ok(ModelConfig {
        family: "gpt2".into(),
        n_layers: c.usize("n_layer")?,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: c.opt_usize("n_inner")?.unwrap_or(d_model.saturating_mul(4)),
        d_vocab: c.usize("vocab_size")?,
        n_ctx,
        norm: NormKind::LayerNorm,
        norm_eps: c.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Learned,
        act,
        gated_mlp: false,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: true,
        extras: Default::default(),
    })
}

/// Rotary settings from either the transformers 4 (`rope_theta` +
/// `rope_scaling`) or the transformers 5 (`rope_parameters`) layout.
fn rope_from_hf(
    c: &Cfg,
    default_theta: f64,
    rotary_dim: usize,
) -> Result<RotaryConfig, ModelError> {
    let params =
        c.v.get("rope_parameters")
            .filter(|p| p.is_object())
            .or_else(|| c.v.get("rope_scaling").filter(|p| p.is_object()));
    let theta = c
        .opt_f64("rope_theta")?
        .or_else(|| {
            params
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(default_theta);
    let scaling = match params {
        None => None,
        Some(p) => {
            let kind = p
                .get("rope_type")
                .or_else(|| p.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            let num = |k: &str| {
                p.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| c.bad(format!("rope scaling {kind:?} needs a number {k:?}")))
            };
            match kind {
                "default" => None,
                "linear" => Some(RopeScaling::Linear {
                    factor: num("factor")?,
                }),
                "llama3" => Some(RopeScaling::Llama3 {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_max_position_embeddings: num("original_max_position_embeddings")?,
                }),
                other => {
                    return Err(c.bad(format!(
                    "rope scaling type {other:?} is not supported (default, linear, llama3 are)"
                )))
                }
            }
        }
    };
    Ok(RotaryConfig {
        theta,
        rotary_dim,
        style: RotaryStyle::NeoX,
        scaling,
    })
}

fn llama_config(c: &Cfg, family: &str) -> Result<ModelConfig, ModelError> {
    let d_model = c.positive("hidden_size")?;
    let n_heads = c.positive("num_attention_heads")?;
    let d_head = match c.opt_usize("head_dim")? {
        Some(d) => d,
        None => c.head_dim(d_model, n_heads, "hidden_size / num_attention_heads")?,
    };
    let act_name = c.opt_str("hidden_act").unwrap_or("silu");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| c.bad(format!("unknown hidden_act {act_name:?}")))?;
    Ok(ModelConfig {
        family: family.to_string(),
        n_layers: c.usize("num_hidden_layers")?,
        d_model,
        n_heads,
        n_kv_heads: c.opt_usize("num_key_value_heads")?.unwrap_or(n_heads),
        d_head,
        d_mlp: c.usize("intermediate_size")?,
        d_vocab: c.usize("vocab_size")?,
        n_ctx: c.opt_usize("max_position_embeddings")?.unwrap_or(4096),
        norm: NormKind::RmsNorm,
        norm_eps: c.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(rope_from_hf(c, 10000.0, d_head)?),
        act,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: c.opt_bool("tie_word_embeddings").unwrap_or(false),
        extras: Default::default(),
    })
}

/// Renames a Hugging Face checkpoint into canonical weights.
pub fn map_hf_weights(
    cfg: &ModelConfig,
    raw: RawWeights,
    origin: &str,
) -> Result<CanonicalWeights, ModelError> {
    match cfg.family.as_str() {
        "gpt2" => map_gpt2(cfg, raw, origin),
        "gpt_neox" => gpt_neox::map(cfg, raw, origin),
        f if gemma::is_gemma(f) => gemma::map(cfg, raw, origin),
        _ => map_llama(cfg, raw, origin),
    }
}

/// Pops tensors from the raw map, remembering the origin for errors.
struct Raw<'a> {
    map: RawWeights,
    origin: &'a str,
}

impl Raw<'_> {
    fn take(&mut self, name: &str) -> Result<Tensor, ModelError> {
        self.map
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                origin: self.origin.to_string(),
            })
    }
    /// Moves a LayerNorm's `{theirs}.weight` / `{theirs}.bias` to canonical
    /// `{ours}.w` / `{ours}.b`.
    fn layer_norm(
        &mut self,
        w: &mut CanonicalWeights,
        ours: &str,
        theirs: &str,
    ) -> Result<(), ModelError> {
        w.insert(format!("{ours}.w"), self.take(&format!("{theirs}.weight"))?);
        w.insert(format!("{ours}.b"), self.take(&format!("{theirs}.bias"))?);
        Ok(())
    }
    /// A Hugging Face `Linear` weight `[out, in]` as canonical `[in, out]`.
    fn linear_t(&mut self, name: &str) -> Result<Tensor, ModelError> {
        Ok(self.take(name)?.t()?.contiguous()?)
    }
    /// A Llama-style block's attention (`self_attn.{q,k,v,o}_proj`) and
    /// gated MLP (`mlp.{gate,up,down}_proj`) of Hugging Face layer `h` as
    /// canonical block `b`'s `attn.W_*` and `mlp.W_*`, with the biases a
    /// checkpoint has (`attention_bias: true`, Qwen2's q/k/v biases).
    fn llama_projections(
        &mut self,
        w: &mut CanonicalWeights,
        h: &str,
        b: &str,
    ) -> Result<(), ModelError> {
        for (n, proj) in [
            ("Q", "q_proj"),
            ("K", "k_proj"),
            ("V", "v_proj"),
            ("O", "o_proj"),
        ] {
            w.insert(
                format!("{b}.attn.W_{n}"),
                self.linear_t(&format!("{h}.self_attn.{proj}.weight"))?,
            );
            if let Ok(bias) = self.take(&format!("{h}.self_attn.{proj}.bias")) {
                w.insert(format!("{b}.attn.b_{n}"), bias);
            }
        }
        for (n, proj) in [
            ("gate", "gate_proj"),
            ("in", "up_proj"),
            ("out", "down_proj"),
        ] {
            w.insert(
                format!("{b}.mlp.W_{n}"),
                self.linear_t(&format!("{h}.mlp.{proj}.weight"))?,
            );
            if let Ok(bias) = self.take(&format!("{h}.mlp.{proj}.bias")) {
                w.insert(format!("{b}.mlp.b_{n}"), bias);
            }
        }
        Ok(())
    }
    fn finish(self, w: CanonicalWeights) -> Result<CanonicalWeights, ModelError> {
        if self.map.is_empty() {
            return Ok(w);
        }
        let mut names: Vec<String> = self.map.into_keys().collect();
        names.sort();
        Err(ModelError::UnusedTensors {
            origin: self.origin.to_string(),
            names,
        })
    }
}

fn map_gpt2(
    cfg: &ModelConfig,
    raw: RawWeights,
    origin: &str,
) -> Result<CanonicalWeights, ModelError> {
    // Checkpoints exist with and without the `transformer.` prefix; the causal
    // mask buffers (`attn.bias`, `attn.masked_bias`) and the tied `lm_head`
    // carry no information.
    let map: RawWeights = raw
        .into_iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("transformer.")
                    .map(str::to_string)
                    .unwrap_or(k),
                v,
            )
        })
        .filter(|(k, _)| {
            !(k.ends_with(".attn.bias")
                || k.ends_with(".attn.masked_bias")
                || k == "lm_head.weight")
        })
        .collect();
    let mut r = Raw { map, origin };
    let mut w = CanonicalWeights::new(origin);
    let d = cfg.d_model;
    w.insert("embed.W_E", r.take("wte.weight")?);
    w.insert("pos_embed.W_pos", r.take("wpe.weight")?);
    for l in 0..cfg.n_layers {
        let (h, b) = (format!("h.{l}"), format!("blocks.{l}"));
        for (ours, theirs) in [("ln1", "ln_1"), ("ln2", "ln_2")] {
            r.layer_norm(&mut w, &format!("{b}.{ours}"), &format!("{h}.{theirs}"))?;
        }
        // Conv1D stores [in, out] already; c_attn packs Q, K, V along out.
        let qkv = r.take(&format!("{h}.attn.c_attn.weight"))?;
        let qkv_b = r.take(&format!("{h}.attn.c_attn.bias"))?;
        for (i, n) in ["Q", "K", "V"].iter().enumerate() {
            w.insert(
                format!("{b}.attn.W_{n}"),
                qkv.narrow(1, i * d, d)?.contiguous()?,
            );
            w.insert(
                format!("{b}.attn.b_{n}"),
                qkv_b.narrow(0, i * d, d)?.contiguous()?,
            );
        }
        w.insert(
            format!("{b}.attn.W_O"),
            r.take(&format!("{h}.attn.c_proj.weight"))?,
        );
        w.insert(
            format!("{b}.attn.b_O"),
            r.take(&format!("{h}.attn.c_proj.bias"))?,
        );
        w.insert(
            format!("{b}.mlp.W_in"),
            r.take(&format!("{h}.mlp.c_fc.weight"))?,
        );
        w.insert(
            format!("{b}.mlp.b_in"),
            r.take(&format!("{h}.mlp.c_fc.bias"))?,
        );
        w.insert(
            format!("{b}.mlp.W_out"),
            r.take(&format!("{h}.mlp.c_proj.weight"))?,
        );
        w.insert(
            format!("{b}.mlp.b_out"),
            r.take(&format!("{h}.mlp.c_proj.bias"))?,
        );
    }
    r.layer_norm(&mut w, "ln_final", "ln_f")?;
    r.finish(w)
}

fn map_llama(
    cfg: &ModelConfig,
    raw: RawWeights,
    origin: &str,
) -> Result<CanonicalWeights, ModelError> {
    let mut map = raw;
    if cfg.tied_unembed {
        // Some tied checkpoints still store the (identical) lm_head.
        map.remove("lm_head.weight");
    }
    // Rotary caches some exporters keep are recomputed from the config.
    map.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    let mut r = Raw { map, origin };
    let mut w = CanonicalWeights::new(origin);
    w.insert("embed.W_E", r.take("model.embed_tokens.weight")?);
    for l in 0..cfg.n_layers {
        let (h, b) = (format!("model.layers.{l}"), format!("blocks.{l}"));
        w.insert(
            format!("{b}.ln1.w"),
            r.take(&format!("{h}.input_layernorm.weight"))?,
        );
        w.insert(
            format!("{b}.ln2.w"),
            r.take(&format!("{h}.post_attention_layernorm.weight"))?,
        );
        r.llama_projections(&mut w, &h, &b)?;
    }
    w.insert("ln_final.w", r.take("model.norm.weight")?);
    if !cfg.tied_unembed {
        w.insert("unembed.W_U", r.linear_t("lm_head.weight")?);
    }
    r.finish(w)
}
