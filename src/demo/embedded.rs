//! The shipped demo model, compiled into the binary.
//!
//! `assets/demo/` holds a Hugging Face GPT-2 directory written by
//! `patchbench train-demo`; its three files are embedded with
//! `include_bytes!` and read through the same GPT-2 mapping as a model
//! directory on disk (`families::config_from_hf` + `families::map_hf_weights`),
//! only from memory, so the `demo` source works offline and loads in
//! milliseconds.

use candle_core::{DType, Device};

use crate::model::weights::CanonicalWeights;
use crate::model::{families, ModelConfig, ModelError, Tokenizer};

/// `assets/demo/config.json`.
pub const CONFIG_JSON: &[u8] = include_bytes!("../../assets/demo/config.json");
/// `assets/demo/model.safetensors` (GPT-2 names, f32).
pub const WEIGHTS: &[u8] = include_bytes!("../../assets/demo/model.safetensors");
/// `assets/demo/tokenizer.json`.
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/demo/tokenizer.json");

const ORIGIN: &str = "the embedded demo model";

/// Config, canonical weights and tokenizer of the embedded model.
pub fn load(
    device: &Device,
    dtype: DType,
) -> Result<(ModelConfig, CanonicalWeights, Tokenizer), ModelError> {
    let json: serde_json::Value =
        serde_json::from_slice(CONFIG_JSON).map_err(|e| ModelError::BadConfig {
            origin: format!("{ORIGIN} (config.json)"),
            message: format!("invalid JSON: {e}"),
        })?;
    let cfg = families::config_from_hf(&json, &format!("{ORIGIN} (config.json)"))?;
    let raw = candle_core::safetensors::load_buffer(WEIGHTS, device).map_err(|e| {
        ModelError::CorruptWeights {
            path: "assets/demo/model.safetensors (embedded)".into(),
            message: e.to_string(),
        }
    })?;
    let raw = raw
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
        .collect::<Result<_, candle_core::Error>>()?;
    let weights = families::map_hf_weights(&cfg, raw, ORIGIN)?;
    let tokenizer =
        Tokenizer::from_json_bytes(TOKENIZER_JSON, &format!("{ORIGIN} (tokenizer.json)"))?;
    Ok((cfg, weights, tokenizer))
}
