//! Canonical weights out to a Hugging Face GPT-2 checkpoint.
//!
//! The demo model is trained in patchbench's canonical layout
//! (`blocks.{l}.attn.W_Q`, `[d_in, d_out]`) and saved as GPT-2 would be
//! (`h.{l}.attn.c_attn.weight`, Conv1D `[d_in, d_out]` with Q, K and V packed
//! along the output axis), so loading it exercises exactly the GPT-2 path of
//! `model::families` and the files also open in `transformers` as
//! `GPT2LMHeadModel`. The unembedding is tied, so no `lm_head.weight` is
//! written.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;
use serde_json::{json, Value};

use super::{DemoError, Stage};

/// The shape of the demo model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoShape {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_ctx: usize,
}

impl Default for DemoShape {
    fn default() -> Self {
        Self {
            n_layers: 4,
            d_model: 128,
            n_heads: 4,
            n_ctx: 64,
        }
    }
}

/// `config.json` of a GPT-2 model of this shape (GELU-tanh, LayerNorm
/// eps 1e-5, MLP 4 × d_model, tied embeddings, no dropout).
pub fn gpt2_config_json(shape: &DemoShape, d_vocab: usize) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": d_vocab,
        "n_positions": shape.n_ctx,
        "n_ctx": shape.n_ctx,
        "n_embd": shape.d_model,
        "n_layer": shape.n_layers,
        "n_head": shape.n_heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        "torch_dtype": "float32"
    })
}

/// Renames canonical tensors to GPT-2's names and layouts.
pub fn canonical_to_gpt2(
    n_layers: usize,
    w: &BTreeMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, DemoError> {
    let get = |name: &str| {
        w.get(name)
            .cloned()
            .ok_or_else(|| DemoError::Export(format!("missing canonical weight {name:?}")))
    };
    let mut out = HashMap::new();
    out.insert("wte.weight".into(), get("embed.W_E")?);
    out.insert("wpe.weight".into(), get("pos_embed.W_pos")?);
    for l in 0..n_layers {
        let (h, b) = (format!("h.{l}"), format!("blocks.{l}"));
        for (ours, theirs) in [("ln1", "ln_1"), ("ln2", "ln_2")] {
            out.insert(
                format!("{h}.{theirs}.weight"),
                get(&format!("{b}.{ours}.w"))?,
            );
            out.insert(format!("{h}.{theirs}.bias"), get(&format!("{b}.{ours}.b"))?);
        }
        let cat = |kind: &str, dim: usize| -> Result<Tensor, DemoError> {
            let parts = ["Q", "K", "V"]
                .iter()
                .map(|n| get(&format!("{b}.attn.{kind}_{n}")))
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::cat(&parts, dim).during("packing c_attn")
        };
        out.insert(format!("{h}.attn.c_attn.weight"), cat("W", 1)?);
        out.insert(format!("{h}.attn.c_attn.bias"), cat("b", 0)?);
        for (theirs, ours) in [
            ("attn.c_proj.weight", "attn.W_O"),
            ("attn.c_proj.bias", "attn.b_O"),
            ("mlp.c_fc.weight", "mlp.W_in"),
            ("mlp.c_fc.bias", "mlp.b_in"),
            ("mlp.c_proj.weight", "mlp.W_out"),
            ("mlp.c_proj.bias", "mlp.b_out"),
        ] {
            out.insert(format!("{h}.{theirs}"), get(&format!("{b}.{ours}"))?);
        }
    }
    out.insert("ln_f.weight".into(), get("ln_final.w")?);
    out.insert("ln_f.bias".into(), get("ln_final.b")?);
    Ok(out)
}

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` into `dir`
/// (created if needed). The safetensors bytes are deterministic: tensors are
/// written in sorted order with no timestamp.
pub fn save_hf_dir(
    dir: &Path,
    config: &Value,
    tensors: &HashMap<String, Tensor>,
    tokenizer_json: &str,
) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    let config_text = serde_json::to_string_pretty(config).expect("a JSON value serialises") + "\n";
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| DemoError::io(&path, e))
    };
    write("config.json", config_text.as_bytes())?;
    write("tokenizer.json", tokenizer_json.as_bytes())?;
    let path = dir.join("model.safetensors");
    let contiguous = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<HashMap<_, _>, candle_core::Error>>()
        .during("preparing weights for saving")?;
    candle_core::safetensors::save(&contiguous, &path).map_err(|e| DemoError::Io {
        path: path.clone(),
        message: e.to_string(),
    })
}
