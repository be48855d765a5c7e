//! GGUF files (llama.cpp's format): Llama-architecture weights, dequantised
//! to floats, and the tokenizer rebuilt from the file's metadata.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that
//! rotary embedding can rotate adjacent pairs; we undo that permutation and
//! use the same half-split rotary as the Hugging Face model, so a GGUF model
//! and its Hugging Face original give the same activations at every hook.
//!
//! With `--weights quantized` the projection matrices stay in their blocks
//! (`quantized.rs`, which undoes the Q/K permutation on whole rows of
//! blocks); everything else is dequantised to f32. Either way tensors are
//! read and converted one at a time, so the file's weights are never held
//! twice.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::config::{
    Activation, ModelConfig, NormKind, Positions, RopeScaling, RotaryConfig, RotaryStyle,
};
use super::gguf_header::{integer, read_content};
use super::precision::WeightsMode;
use super::quantized::{is_block_quantized, unpermute_heads};
use super::tokenizer::{GgufVocab, Tokenizer};
use super::weights::{check_finite, CanonicalWeights};
use super::ModelError;
use crate::util::fs::open_regular;

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
    /// A count something is divided by or sized with.
    fn positive(&self, key: &str) -> Result<usize, ModelError> {
        match self.usize(key)? {
            0 => Err(self.bad(format!(
                "GGUF metadata {key:?} is 0; it must be a positive integer"
            ))),
            n => Ok(n),
        }
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = integer(v)
            .ok_or_else(|| self.bad(format!("GGUF metadata {key:?} is not an integer")))?;
        usize::try_from(n).map(Some).map_err(|_| {
            self.bad(format!(
                "GGUF metadata {key:?} is {n}; it must be a non-negative integer that fits in memory"
            ))
        })
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
    fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor {
            name: name.to_string(),
            origin: self.path.display().to_string(),
        }
    }
}

/// Reads a GGUF file into canonical config, weights and tokenizer.
pub fn load(path: &Path, device: &Device, mode: WeightsMode) -> Result<GgufModel, ModelError> {
    let (content, mut reader) = open(path)?;
    let m = Meta {
        content: &content,
        path,
    };
    check_architecture(&m)?;
    let config = read_config(&m)?;
    let weights = read_weights(&m, &mut reader, &config, device, mode)?;
    let tokenizer = Tokenizer::from_gguf_vocab(vocab_from_metadata(&m)?)?;
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
    })
}

/// Everything the header alone determines: the architecture check, the
/// canonical config and the tokenizer. The fuzzer drives this after
/// [`parse_bytes`](super::gguf_header::parse_bytes), so every metadata path
/// a hostile file can reach before tensor data is exercised.
pub fn config_and_tokenizer(
    content: &Content,
    path: &Path,
) -> Result<(ModelConfig, Tokenizer), ModelError> {
    let m = Meta { content, path };
    check_architecture(&m)?;
    let config = read_config(&m)?;
    let tokenizer = Tokenizer::from_gguf_vocab(vocab_from_metadata(&m)?)?;
    Ok((config, tokenizer))
}

/// Opens the file (a regular file only: a FIFO or device is refused at once)
/// and parses its header with every size checked.
fn open(path: &Path) -> Result<(Content, BufReader<File>), ModelError> {
    let file = open_regular(path, "GGUF model file")?;
    let size = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let content = read_content(&mut reader, size).map_err(|source| ModelError::Gguf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((content, reader))
}

/// Only Llama-architecture GGUF files, without per-frequency rope factors.
fn check_architecture(m: &Meta) -> Result<(), ModelError> {
    let arch = m.opt_str("general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(ModelError::UnsupportedArchitecture {
            origin: m.path.display().to_string(),
            arch,
            supported: "llama (GGUF)".into(),
        });
    }
    if m.content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(m.bad("per-frequency rope factors (rope_freqs.weight, Llama 3.1 style) are not supported in GGUF yet; load the Hugging Face safetensors version instead".into()));
    }
    Ok(())
}

/// The canonical config from `llama.*` metadata and the embedding's shape.
fn read_config(m: &Meta) -> Result<ModelConfig, ModelError> {
    let d_model = m.positive("llama.embedding_length")?;
    let n_heads = m.positive("llama.attention.head_count")?;
    let n_kv_heads = m
        .opt_usize("llama.attention.head_count_kv")?
        .unwrap_or(n_heads);
    let d_head = match m.opt_usize("llama.attention.key_length")? {
        Some(d) => d,
        None if d_model % n_heads == 0 => d_model / n_heads,
        None => {
            return Err(m.bad(format!(
                "llama.embedding_length {d_model} is not a multiple of llama.attention.head_count {n_heads}"
            )))
        }
    };
    let rotary_dim = m.opt_usize("llama.rope.dimension_count")?.unwrap_or(d_head);
    let embd = m
        .content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| m.missing("token_embd.weight"))?;
    // candle reverses ggml's fastest-first dims: this is [d_vocab, d_model].
    let d_vocab = match embd.shape.dims() {
        [v, d] if *d == d_model => *v,
        dims => {
            return Err(m.bad(format!(
                "token_embd.weight has shape {dims:?}, expected [vocabulary, {d_model}]"
            )))
        }
    };
    let scaling = match m.opt_str("llama.rope.scaling.type").as_deref() {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: m.opt_f64("llama.rope.scaling.factor")?.unwrap_or(1.0),
        }),
        Some(other) => {
            return Err(m.bad(format!("rope scaling {other:?} is not supported in GGUF")))
        }
    };
    let config = ModelConfig {
        family: "llama".into(),
        n_layers: m.positive("llama.block_count")?,
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
        tied_unembed: !m.content.tensor_infos.contains_key("output.weight"),
        extras: Default::default(),
    };
    config.validate().map_err(|e| m.bad(e))?;
    Ok(config)
}

/// Dequantises every tensor (or, with `--weights quantized`, keeps the
/// projection matrices quantized), refusing non-finite values (named by
/// their GGUF name), and renames them canonically.
fn read_weights(
    m: &Meta,
    reader: &mut BufReader<File>,
    config: &ModelConfig,
    device: &Device,
    mode: WeightsMode,
) -> Result<CanonicalWeights, ModelError> {
    let mut r = TensorReader {
        m,
        reader,
        device,
        mode,
    };
    let mut w = CanonicalWeights::new(m.path.display().to_string());
    w.insert("embed.W_E", r.float("token_embd.weight")?);
    for l in 0..config.n_layers {
        let (g, b) = (format!("blk.{l}"), format!("blocks.{l}"));
        w.insert(
            format!("{b}.ln1.w"),
            r.float(&format!("{g}.attn_norm.weight"))?,
        );
        w.insert(
            format!("{b}.ln2.w"),
            r.float(&format!("{g}.ffn_norm.weight"))?,
        );
        for (ours, theirs, heads) in [
            ("attn.W_Q", "attn_q", Some(config.n_heads)),
            ("attn.W_K", "attn_k", Some(config.n_kv_heads)),
            ("attn.W_V", "attn_v", None),
            ("attn.W_O", "attn_output", None),
            ("mlp.W_gate", "ffn_gate", None),
            ("mlp.W_in", "ffn_up", None),
            ("mlp.W_out", "ffn_down", None),
        ] {
            r.matrix(
                &mut w,
                format!("{b}.{ours}"),
                &format!("{g}.{theirs}.weight"),
                heads,
            )?;
        }
    }
    w.insert("ln_final.w", r.float("output_norm.weight")?);
    if !config.tied_unembed {
        // The unembedding stays a float matrix: direct logit attribution
        // reads its columns.
        w.insert("unembed.W_U", r.float("output.weight")?.t()?.contiguous()?);
    }
    Ok(w)
}

/// Reads tensors one at a time, each checked finite through a dequantised
/// copy that is dropped before the next is read.
struct TensorReader<'a> {
    m: &'a Meta<'a>,
    reader: &'a mut BufReader<File>,
    device: &'a Device,
    mode: WeightsMode,
}

impl TensorReader<'_> {
    /// Candle could not read tensor `name`; its error stays the source.
    fn corrupt(&self, name: &str, source: candle_core::Error) -> ModelError {
        ModelError::TensorRead {
            path: self.m.path.to_path_buf(),
            tensor: name.to_owned(),
            source: Box::new(source),
        }
    }

    fn read(&mut self, name: &str) -> Result<(QTensor, Tensor), ModelError> {
        if !self.m.content.tensor_infos.contains_key(name) {
            return Err(self.m.missing(name));
        }
        let q = self
            .m
            .content
            .tensor(self.reader, name, self.device)
            .map_err(|e| self.corrupt(name, e))?;
        let t = q
            .dequantize(self.device)
            .map_err(|e| self.corrupt(name, e))?;
        check_finite(name, &t, &self.m.path.display().to_string())?;
        Ok((q, t))
    }

    /// A tensor dequantised to the activations' dtype.
    fn float(&mut self, name: &str) -> Result<Tensor, ModelError> {
        Ok(self.read(name)?.1.to_dtype(self.mode.dtype())?)
    }

    /// A projection `[out, in]` as canonical `[in, out]` floats, or kept
    /// quantized; `heads` undoes the Q/K row permutation.
    fn matrix(
        &mut self,
        w: &mut CanonicalWeights,
        ours: String,
        theirs: &str,
        heads: Option<usize>,
    ) -> Result<(), ModelError> {
        let (q, t) = self.read(theirs)?;
        if self.mode.is_quantized() && is_block_quantized(q.dtype()) {
            drop(t);
            let q = match heads {
                Some(n) => unpermute_heads(&q, n).map_err(|e| self.corrupt(theirs, e))?,
                None => q,
            };
            w.insert_quantized(ours, q);
        } else {
            drop(q);
            let t = match heads {
                Some(n) => unpermute(&t, n)?,
                None => t,
            };
            w.insert(ours, t.t()?.contiguous()?.to_dtype(self.mode.dtype())?);
        }
        Ok(())
    }
}

/// Undoes llama.cpp's `permute` of Q/K rows (`[out, in]`):
/// GGUF rows are `(head, pair, half)`; Hugging Face's are `(head, half, pair)`.
fn unpermute(w: &Tensor, n_heads: usize) -> Result<Tensor, ModelError> {
    let (out, inp) = w.dims2()?;
    // n_heads was checked positive; a row count it does not divide is a
    // shape error from reshape below.
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
    let id = |k: &str| -> Result<Option<u32>, ModelError> {
        m.opt_usize(k)?
            .map(|x| {
                u32::try_from(x)
                    .map_err(|_| m.bad(format!("GGUF metadata {k:?} is {x}, not a token id")))
            })
            .transpose()
    };
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
