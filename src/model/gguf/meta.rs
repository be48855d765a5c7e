//! Typed, checked access to a GGUF file's metadata: every value a file
//! supplies is checked (type, sign, size) before a mapping uses it, and a
//! bad one is an error naming the key.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::model::gguf_header::integer;
use crate::model::ModelError;

/// A parsed header and the path it came from (for messages).
pub struct Meta<'a> {
    pub content: &'a Content,
    pub path: &'a Path,
}

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    /// The tensor's dims in candle's order (ggml's reversed: `[rows, cols]`).
    pub fn tensor_dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims())
    }
    pub fn origin(&self) -> String {
        self.path.display().to_string()
    }
    pub fn bad(&self, message: String) -> ModelError {
        ModelError::BadConfig {
            origin: self.origin(),
            message,
        }
    }
    pub fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.bad(format!("GGUF metadata has no {key:?}")))
    }
    /// A count something is divided by or sized with.
    pub fn positive(&self, key: &str) -> Result<usize, ModelError> {
        match self.usize(key)? {
            0 => Err(self.bad(format!(
                "GGUF metadata {key:?} is 0; it must be a positive integer"
            ))),
            n => Ok(n),
        }
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
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
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
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
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_bool()
                .map(Some)
                .map_err(|_| self.bad(format!("GGUF metadata {key:?} is not a boolean"))),
        }
    }
    pub fn opt_str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok()).cloned()
    }
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ModelError> {
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
    pub fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor {
            name: name.to_string(),
            origin: self.origin(),
        }
    }
}

impl Meta<'_> {
    /// The vocabulary size, from `token_embd.weight`'s shape `[d_vocab, d_model]`.
    pub fn d_vocab(&self, d_model: usize) -> Result<usize, ModelError> {
        let name = "token_embd.weight";
        match self.tensor_dims(name) {
            None => Err(self.missing(name)),
            Some([v, d]) if *d == d_model => Ok(*v),
            Some(dims) => Err(self.bad(format!(
                "{name} has shape {dims:?}, expected [vocabulary, {d_model}]"
            ))),
        }
    }

    /// `{arch}.attention.key_length`, else `d_model / n_heads` (which must divide).
    pub fn d_head(&self, arch: &str, d_model: usize, n_heads: usize) -> Result<usize, ModelError> {
        match self.opt_usize(&format!("{arch}.attention.key_length"))? {
            Some(d) => Ok(d),
            None if d_model % n_heads == 0 => Ok(d_model / n_heads),
            None => Err(self.bad(format!(
                "{arch}.embedding_length {d_model} is not a multiple of \
                 {arch}.attention.head_count {n_heads}"
            ))),
        }
    }
}
