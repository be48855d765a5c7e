//! The shipped demo model, compiled into the binary.
//!
//! The bytes live in the model layer (`model::embedded`), which loads them
//! like any Hugging Face directory; this module re-exports them for the
//! demo's own tests and tools, and offers the loaded parts.

use candle_core::{DType, Device};

pub use crate::model::embedded::{CONFIG_JSON, TOKENIZER_JSON, WEIGHTS};
use crate::model::weights::CanonicalWeights;
use crate::model::{embedded, hf, ModelConfig, ModelError, Tokenizer};

/// Config, canonical weights and tokenizer of the embedded model.
pub fn load(
    device: &Device,
    dtype: DType,
) -> Result<(ModelConfig, CanonicalWeights, Tokenizer), ModelError> {
    hf::load_bytes(&embedded::DEMO, device, dtype)
}
