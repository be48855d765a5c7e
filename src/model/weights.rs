//! Canonical weight names and shapes.
//!
//! Family loaders translate their checkpoint's names and layouts (GPT-2's
//! Conv1D `[in, out]`, Hugging Face `Linear`'s `[out, in]`, llama.cpp's
//! permuted rotary rows) into one set of TransformerLens-style names with
//! `[d_in, d_out]` matrices, so `x.matmul(W)` is the projection everywhere.
//!
//! | name | shape |
//! |---|---|
//! | `embed.W_E` | `[d_vocab, d_model]` |
//! | `pos_embed.W_pos` | `[n_ctx, d_model]` (learned positions) |
//! | `blocks.{l}.ln1.w`, `.ln1.b`, `.ln2.w`, `.ln2.b` | `[d_model]` (`b` only for LayerNorm) |
//! | `blocks.{l}.attn.W_Q`, `.b_Q` | `[d_model, n_heads*d_head]`, `[n_heads*d_head]` |
//! | `blocks.{l}.attn.W_K`, `.W_V`, `.b_K`, `.b_V` | `[d_model, n_kv_heads*d_head]`, `[n_kv_heads*d_head]` |
//! | `blocks.{l}.attn.W_O`, `.b_O` | `[n_heads*d_head, d_model]`, `[d_model]` |
//! | `blocks.{l}.mlp.W_in`, `.b_in` | `[d_model, d_mlp]`, `[d_mlp]` |
//! | `blocks.{l}.mlp.W_gate` | `[d_model, d_mlp]` (gated MLPs) |
//! | `blocks.{l}.mlp.W_out`, `.b_out` | `[d_mlp, d_model]`, `[d_model]` |
//! | `ln_final.w`, `ln_final.b` | `[d_model]` |
//! | `unembed.W_U`, `unembed.b_U` | `[d_model, d_vocab]`, `[d_vocab]` (absent when tied) |
//!
//! Biases are optional everywhere; a missing bias means zero.
//!
//! A projection matrix may instead be held quantized (`--weights
//! quantized`): then it is a GGUF `QTensor` in ggml layout `[d_out, d_in]`,
//! inserted with [`CanonicalWeights::insert_quantized`] and taken with
//! [`CanonicalWeights::take_matrix`] like a float one.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Tensor};

use super::linear::Matrix;
use super::ModelError;

/// Named tensors in canonical layout, consumed by `Transformer::new`.
#[derive(Debug, Default)]
pub struct CanonicalWeights {
    map: BTreeMap<String, Tensor>,
    /// Quantized projection matrices, `[d_out, d_in]`.
    quantized: BTreeMap<String, Arc<QTensor>>,
    /// Where the weights came from, for error messages.
    pub origin: String,
}

impl CanonicalWeights {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            map: BTreeMap::new(),
            quantized: BTreeMap::new(),
            origin: origin.into(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.map.insert(name.into(), t);
    }

    /// A projection matrix kept quantized, in ggml layout `[d_out, d_in]`.
    pub fn insert_quantized(&mut self, name: impl Into<String>, q: QTensor) {
        self.quantized.insert(name.into(), Arc::new(q));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name) || self.quantized.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys().chain(self.quantized.keys())
    }

    /// Removes a required projection matrix, float `[d_in, d_out]` or
    /// quantized `[d_out, d_in]`, checking its shape.
    pub fn take_matrix(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Matrix, ModelError> {
        if let Some(q) = self.quantized.remove(name) {
            let dims = q.shape().dims().to_vec();
            if dims != [d_out, d_in] {
                return Err(ModelError::ShapeMismatch {
                    name: name.to_string(),
                    expected: vec![d_out, d_in],
                    found: dims,
                    origin: self.origin.clone(),
                });
            }
            return Ok(Matrix::Quantized(q));
        }
        Ok(Matrix::Dense(self.take(name, &[d_in, d_out])?))
    }

    /// Removes a required tensor, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let t = self
            .map
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                origin: self.origin.clone(),
            })?;
        check_shape(name, &t, shape, &self.origin)?;
        Ok(t)
    }

    /// Removes an optional tensor (a bias), checking its shape when present.
    pub fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, ModelError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(t) => {
                check_shape(name, &t, shape, &self.origin)?;
                Ok(Some(t))
            }
        }
    }

    /// Removes a tensor whatever its shape (for re-wrapping weights, e.g. as
    /// trainable variables).
    pub fn take_any(&mut self, name: &str) -> Option<Tensor> {
        self.map.remove(name)
    }

    /// Names left over after construction: a sign of a mapping bug.
    pub fn leftover(&self) -> Vec<String> {
        self.names().cloned().collect()
    }
}

fn check_shape(name: &str, t: &Tensor, shape: &[usize], origin: &str) -> Result<(), ModelError> {
    if t.dims() != shape {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: shape.to_vec(),
            found: t.dims().to_vec(),
            origin: origin.to_string(),
        });
    }
    Ok(())
}

/// Refuses a tensor holding NaN or infinity: patching on such weights gives
/// NaN metrics that look like results. One pass (`0 * t` is zero exactly
/// where `t` is finite, NaN where it is NaN or infinite); the offending
/// element is looked up only on failure.
pub fn check_finite(name: &str, t: &Tensor, origin: &str) -> Result<(), ModelError> {
    if !t.dtype().is_float() {
        return Ok(());
    }
    let t = t.to_dtype(DType::F32)?.flatten_all()?;
    let zero = t.affine(0.0, 0.0)?.sum_all()?.to_scalar::<f32>()?;
    if zero == 0.0 {
        return Ok(());
    }
    let values = t.to_vec1::<f32>()?;
    let (index, v) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, v)| (i, *v))
        .unwrap_or((0, f32::NAN));
    Err(ModelError::NonFinite {
        origin: origin.to_string(),
        name: name.to_string(),
        what: if v.is_nan() { "NaN" } else { "infinity" },
        index,
    })
}
