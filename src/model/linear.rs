//! The projections of the canonical transformer: `y = x W + b`, where `W` is
//! either a float matrix or a quantized GGUF matrix kept in its blocks.
//!
//! A [`Matrix::Dense`] weight is stored `[d_in, d_out]` (the canonical
//! layout, `x.matmul(W)`) in the model's dtype and carries gradients like
//! any tensor. A [`Matrix::Quantized`] weight is a `QMatMul` over a GGUF
//! `QTensor` stored the ggml way, `[d_out, d_in]` with each row quantized
//! in blocks along `d_in`: candle quantizes the activations to 8 bits per
//! block and takes integer dot products, so the product is close to, not
//! equal to, the dequantised one, and no gradient flows through it
//! (`apply_op1_no_bwd`). Methods that need gradients therefore refuse
//! quantized models (`Transformer::require_float_weights`).
//!
//! Hooks never see the difference: they sit on activations, which are
//! plain tensors in both cases.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Result as CResult, Tensor};

use super::layers::matmul_weight;

/// A projection matrix, float or quantized.
#[derive(Debug, Clone)]
pub enum Matrix {
    /// `[d_in, d_out]` in the model's dtype.
    Dense(Tensor),
    /// ggml layout `[d_out, d_in]`, quantized along `d_in`.
    Quantized(Arc<QTensor>),
}

impl Matrix {
    /// `(d_in, d_out)`.
    pub fn dims(&self) -> CResult<(usize, usize)> {
        match self {
            Matrix::Dense(w) => w.dims2(),
            Matrix::Quantized(q) => {
                let (o, i) = q.shape().dims2()?;
                Ok((i, o))
            }
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Matrix::Quantized(_))
    }

    /// The matrix as a float tensor `[d_in, d_out]`: the weight itself when
    /// dense, a dequantised f32 copy when quantized (for analyses that read
    /// a few rows of `W_O` or `W_out`, not for the forward pass).
    pub fn to_dense(&self) -> CResult<Tensor> {
        match self {
            Matrix::Dense(w) => Ok(w.clone()),
            Matrix::Quantized(q) => q.dequantize(&q.device())?.t()?.contiguous(),
        }
    }
}

/// `y = x W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Matrix,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn dense(w: Tensor, b: Option<Tensor>) -> Self {
        Linear {
            w: Matrix::Dense(w),
            b,
        }
    }

    /// # Shapes
    /// `x: [.., d_in]` -> `[.., d_out]`
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, d_in))?;
        let (y, d_out) = match &self.w {
            Matrix::Dense(w) => (matmul_weight(&x2, w)?, w.dim(1)?),
            Matrix::Quantized(q) => {
                // candle's quantized kernels take f32 activations on every
                // device; a quantized model runs its activations in f32.
                let x2 = x2.to_dtype(DType::F32)?.contiguous()?;
                let y = QMatMul::QTensor(q.clone()).forward(&x2)?;
                (y.to_dtype(x.dtype())?, q.shape().dims2()?.0)
            }
        };
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = d_out;
        y.reshape(out)
    }
}

impl Linear {
    /// Per-head projection of per-head inputs: head `h` of `x` goes through
    /// columns `h * d_head .. (h + 1) * d_head` of `W` (and of `b`). With
    /// `x` the same for every head this equals [`Self::forward`] reshaped.
    ///
    /// # Shapes
    /// `x: [batch, pos, heads, d_in]` -> `[batch, pos, heads, d_out / heads]`
    pub fn forward_heads(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, t, h, d_in) = x.dims4()?;
        // A quantized matrix is dequantised (no gradient flows through it anyway).
        let w = self.w.to_dense()?;
        let dh = w.dim(1)? / h;
        // [heads, d_in, d_head]
        let w = w.reshape((d_in, h, dh))?.transpose(0, 1)?.contiguous()?;
        let xs = x.transpose(0, 2)?.reshape((h, t * b, d_in))?; // [h, t*b, d_in]
        let y = matmul_weight(&xs.contiguous()?, &w)?; // [h, t*b, dh]
        let y = match &self.b {
            Some(bias) => y.broadcast_add(&bias.reshape((h, 1, dh))?)?,
            None => y,
        };
        y.reshape((h, t, b, dh))?.transpose(0, 2)
    }
}
