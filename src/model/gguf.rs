//! GGUF files (llama.cpp's format): Llama-architecture weights, dequantised
//! to floats, and the tokenizer rebuilt from the file's metadata.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that
//! rotary embedding can rotate adjacent pairs; we undo that permutation and
//! use the same half-split rotary as the Hugging Face model, so a GGUF model
//! and its Hugging Face original give the same activations at every hook.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};

use super::config::{
    Activation, ModelConfig, NormKind, Positions, RopeScaling, RotaryConfig, RotaryStyle,
};
use super::tokenizer::{GgufVocab, Tokenizer};
use super::weights::CanonicalWeights;
use super::ModelError;

pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: CanonicalWeights,
    pub tokenizer: Tokenizer,
}

struct Meta<'a> {
    content: &'a Content,
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }
    fn bad(&self, message: String) -> ModelError {
        ModelError::BadConfig {
            origin: self.path.display().to_string(),
            message,
        }
    }
    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.bad(format!("GGUF metadata has no {key:?}")))
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
                .map(|x| Some(x as usize))
                .map_err(|_| self.bad(format!("GGUF metadata {key:?} is not an integer"))),
        }
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .or_else(|_| v.to_f64())
                .map(Some)
                .map_err(|_| self.bad(format!("GGUF metadata {key:?} is not a number"))),
        }
    }
    fn opt_str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok()).cloned()
    }
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ModelError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v
            .to_vec()
            .map_err(|_| self.bad(format!("GGUF metadata {key:?} is not an array")))?;
        arr.iter()
            .map(|x| {
                x.to_string()
                    .cloned()
                    .map_err(|_| self.bad(format!("GGUF metadata {key:?} holds non-strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Reads a GGUF file into canonical config, weights and tokenizer.
pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<GgufModel, ModelError> {
    let corrupt = |e: &dyn std::fmt::Display| ModelError::CorruptWeights {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| corrupt(&e))?;
    let m = Meta {
        content: &content,
        path,
    };
    let arch = m.opt_str("general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(ModelError::UnsupportedArchitecture {
            origin: path.display().to_string(),
            arch,
            supported: "llama (GGUF)".into(),
        });
    }
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(m.bad("per-frequency rope factors (rope_freqs.weight, Llama 3.1 style) are not supported in GGUF yet; load the Hugging Face safetensors version instead".into()));
    }
    let d_model = m.usize("llama.embedding_length")?;
    let n_heads = m.usize("llama.attention.head_count")?;
    let n_kv_heads = m
        .opt_usize("llama.attention.head_count_kv")?
        .unwrap_or(n_heads);
    let d_head = m
        .opt_usize("llama.attention.key_length")?
        .unwrap_or(d_model / n_heads);
    let rotary_dim = m.opt_usize("llama.rope.dimension_count")?.unwrap_or(d_head);
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            name: "token_embd.weight".into(),
            origin: path.display().to_string(),
        })?;
    // candle reverses ggml's fastest-first dims: this is [d_vocab, d_model].
    let d_vocab = embd.shape.dims()[0];
    let scaling = match m.opt_str("llama.rope.scaling.type").as_deref() {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: m.opt_f64("llama.rope.scaling.factor")?.unwrap_or(1.0),
        }),
        Some(other) => {
            return Err(m.bad(format!("rope scaling {other:?} is not supported in GGUF")))
        }
    };
    let tied = !content.tensor_infos.contains_key("output.weight");
    let config = ModelConfig {
        family: "llama".into(),
        n_layers: m.usize("llama.block_count")?,
        d_model,
        n_heads,
        n_kv_heads,
        d_head,
        d_mlp: m.usize("llama.feed_forward_length")?,
        d_vocab,
        n_ctx: m.opt_usize("llama.context_length")?.unwrap_or(2048),
        norm: NormKind::RmsNorm,
        norm_eps: m
            .opt_f64("llama.attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5),
        norm_weight_offset: 0.0,
        positions: Positions::Rotary(RotaryConfig {
            theta: m.opt_f64("llama.rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim,
            style: RotaryStyle::NeoX,
            scaling,
        }),
        act: Activation::Silu,
        gated_mlp: true,
        parallel_attn_mlp: false,
        embed_scale: None,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        tied_unembed: tied,
    };
    config.validate().map_err(|e| m.bad(e))?;

    let mut get = |name: &str| -> Result<Tensor, ModelError> {
        if !content.tensor_infos.contains_key(name) {
            return Err(ModelError::MissingTensor {
                name: name.to_string(),
                origin: path.display().to_string(),
            });
        }
        let q = content
            .tensor(&mut reader, name, device)
            .map_err(|e| corrupt(&e))?;
        Ok(q.dequantize(device)
            .map_err(|e| corrupt(&e))?
            .to_dtype(dtype)?)
    };
    // [out, in] -> canonical [in, out]
    let lin = |t: Tensor| -> Result<Tensor, ModelError> { Ok(t.t()?.contiguous()?) };
    let mut w = CanonicalWeights::new(path.display().to_string());
    w.insert("embed.W_E", get("token_embd.weight")?);
    for l in 0..config.n_layers {
        let (g, b) = (format!("blk.{l}"), format!("blocks.{l}"));
        w.insert(format!("{b}.ln1.w"), get(&format!("{g}.attn_norm.weight"))?);
        w.insert(format!("{b}.ln2.w"), get(&format!("{g}.ffn_norm.weight"))?);
        let q = unpermute(&get(&format!("{g}.attn_q.weight"))?, n_heads)?;
        let k = unpermute(&get(&format!("{g}.attn_k.weight"))?, n_kv_heads)?;
        w.insert(format!("{b}.attn.W_Q"), lin(q)?);
        w.insert(format!("{b}.attn.W_K"), lin(k)?);
        w.insert(
            format!("{b}.attn.W_V"),
            lin(get(&format!("{g}.attn_v.weight"))?)?,
        );
        w.insert(
            format!("{b}.attn.W_O"),
            lin(get(&format!("{g}.attn_output.weight"))?)?,
        );
        w.insert(
            format!("{b}.mlp.W_gate"),
            lin(get(&format!("{g}.ffn_gate.weight"))?)?,
        );
        w.insert(
            format!("{b}.mlp.W_in"),
            lin(get(&format!("{g}.ffn_up.weight"))?)?,
        );
        w.insert(
            format!("{b}.mlp.W_out"),
            lin(get(&format!("{g}.ffn_down.weight"))?)?,
        );
    }
    w.insert("ln_final.w", get("output_norm.weight")?);
    if !tied {
        w.insert("unembed.W_U", lin(get("output.weight")?)?);
    }
    let tokenizer = Tokenizer::from_gguf_vocab(vocab_from_metadata(&m)?)?;
    Ok(GgufModel {
        config,
        weights: w,
        tokenizer,
    })
}

/// Undoes llama.cpp's `permute` of Q/K rows (`[out, in]`):
/// GGUF rows are `(head, pair, half)`; Hugging Face's are `(head, half, pair)`.
fn unpermute(w: &Tensor, n_heads: usize) -> Result<Tensor, ModelError> {
    let (out, inp) = w.dims2()?;
    let d_head = out / n_heads;
    Ok(w.reshape((n_heads, d_head / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

fn vocab_from_metadata(m: &Meta) -> Result<GgufVocab, ModelError> {
    let tokens = m
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| m.bad("GGUF metadata has no tokenizer.ggml.tokens; patchbench needs the tokenizer inside the file".into()))?;
    let token_types = match m.get("tokenizer.ggml.token_type") {
        None => None,
        Some(v) => Some(
            v.to_vec()
                .map_err(|_| m.bad("tokenizer.ggml.token_type is not an array".into()))?
                .iter()
                .map(|x| {
                    x.to_i32()
                        .map_err(|_| m.bad("tokenizer.ggml.token_type holds non-integers".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scores = match m.get("tokenizer.ggml.scores") {
        None => None,
        Some(v) => Some(
            v.to_vec()
                .map_err(|_| m.bad("tokenizer.ggml.scores is not an array".into()))?
                .iter()
                .map(|x| {
                    x.to_f32()
                        .map_err(|_| m.bad("tokenizer.ggml.scores holds non-numbers".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let id = |k: &str| -> Result<Option<u32>, ModelError> { Ok(m.opt_usize(k)?.map(|x| x as u32)) };
    Ok(GgufVocab {
        model: m
            .opt_str("tokenizer.ggml.model")
            .unwrap_or_else(|| "gpt2".into()),
        pre: m.opt_str("tokenizer.ggml.pre"),
        tokens,
        token_types,
        merges: m.strings("tokenizer.ggml.merges")?.unwrap_or_default(),
        scores,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: id("tokenizer.ggml.eos_token_id")?,
        unk_token_id: id("tokenizer.ggml.unknown_token_id")?,
        add_bos_token: m
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok()),
    })
}
