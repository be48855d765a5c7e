//! How a model's weights are held in memory: `--weights f32|bf16|f16|quantized`.
//!
//! - `f32` (the default): every weight and activation in f32.
//! - `bf16` / `f16`: weights and activations in half precision, half the
//!   memory. Norms and softmax compute in f32 internally, and the patching
//!   engine converts logits to f32 before any metric, so metrics always
//!   accumulate in f32; what changes is the rounding of the weights and of
//!   the residual stream between ops (tolerances per family in the README).
//! - `quantized`: a GGUF file's quantized matrices stay in their blocks
//!   (`linear::Matrix::Quantized`); embeddings, norms and the unembedding
//!   are dequantised to f32 and activations run in f32. Exact patching
//!   only: no gradients flow through quantized matmuls, so attribution
//!   refuses such a model. `random:` presets quantize each matrix to Q4_0
//!   as it is generated. Safetensors directories are refused (their
//!   weights are floats; use bf16 to halve their memory).

use std::fmt;
use std::str::FromStr;

use candle_core::DType;

use super::ModelError;

/// The `--weights` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsMode {
    #[default]
    F32,
    Bf16,
    F16,
    Quantized,
}

impl WeightsMode {
    pub const NAMES: &'static str = "f32, bf16, f16 or quantized";

    /// The dtype of float weights and of activations.
    pub fn dtype(self) -> DType {
        match self {
            WeightsMode::F32 | WeightsMode::Quantized => DType::F32,
            WeightsMode::Bf16 => DType::BF16,
            WeightsMode::F16 => DType::F16,
        }
    }

    pub fn is_quantized(self) -> bool {
        self == WeightsMode::Quantized
    }

    /// The mode whose float dtype is `dtype` (for callers that still speak dtypes).
    pub fn from_dtype(dtype: DType) -> Self {
        match dtype {
            DType::BF16 => WeightsMode::Bf16,
            DType::F16 => WeightsMode::F16,
            _ => WeightsMode::F32,
        }
    }
}

impl FromStr for WeightsMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(WeightsMode::F32),
            "bf16" | "bfloat16" => Ok(WeightsMode::Bf16),
            "f16" | "float16" | "half" => Ok(WeightsMode::F16),
            "quantized" => Ok(WeightsMode::Quantized),
            other => Err(ModelError::Source(format!(
                "unknown weights mode {other:?}: use {}",
                Self::NAMES
            ))),
        }
    }
}

impl fmt::Display for WeightsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightsMode::F32 => "f32",
            WeightsMode::Bf16 => "bf16",
            WeightsMode::F16 => "f16",
            WeightsMode::Quantized => "quantized",
        })
    }
}
