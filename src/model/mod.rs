//! The model layer: weights from any source, mapped onto one canonical
//! transformer whose forward pass exposes TransformerLens hook points.
//!
//! - `config`: what varies between families, as data;
//! - `weights`: canonical tensor names and layouts;
//! - `forward`: the one hooked forward pass;
//! - `hooks`: hook names, captures and batched interventions;
//! - `families`: Hugging Face configs and weight names for GPT-2 and Llama-likes;
//! - `gguf`, `hf`, `random`, `source`: where weights come from;
//! - `tokenizer`: text to ids, with BOS handled explicitly.

pub mod config;
pub mod cpu_threads;
pub mod device;
#[cfg(feature = "cuda")]
mod device_cuda;
pub mod embedded;
pub mod families;
pub mod forward;
mod gelu;
pub mod gguf;
pub mod gguf_header;
pub mod hf;
pub mod hooks;
pub mod layers;
pub mod layout;
pub mod linear;
pub mod loaded;
pub mod malloc;
pub mod precision;
pub mod quantized;
pub mod random;
pub mod rotary;
pub mod safetensors_io;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use config::ModelConfig;
pub use forward::{ForwardOptions, ForwardOutput, KvCache, StartState, Transformer};
pub use hooks::{ActivationCache, Edit, HookPoint, HookSpec};
pub use loaded::LoadedModel;
pub use precision::WeightsMode;
pub use source::ModelSource;
pub use tokenizer::Tokenizer;

use std::path::PathBuf;

/// Everything that can go wrong turning a model source into a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "{path}: refusing to load a pickle checkpoint, because unpickling can execute arbitrary code. \
         Convert it to safetensors first (for example `python -c \"from transformers import AutoModelForCausalLM as M; \
         M.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"`) and point patchbench at the directory"
    )]
    Pickle { path: PathBuf },
    #[error("{path}: not a usable model directory: {message}")]
    BadDirectory { path: PathBuf, message: String },
    #[error("{origin}: bad configuration: {message}")]
    BadConfig { origin: String, message: String },
    #[error("{origin}: architecture {arch:?} is not supported yet (supported: {supported})")]
    UnsupportedArchitecture {
        origin: String,
        arch: String,
        supported: String,
    },
    #[error("{origin}: missing weight {name:?}")]
    MissingTensor { name: String, origin: String },
    #[error("{origin}: weight {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        origin: String,
    },
    #[error("{origin}: weights not used by the model mapping (is this the right architecture?): {}", names.join(", "))]
    UnusedTensors { origin: String, names: Vec<String> },
    #[error("{path}: cannot read tensor {tensor:?} ({source}); the file may be truncated or not a safetensors/GGUF file")]
    TensorRead {
        path: PathBuf,
        tensor: String,
        /// Boxed: candle's error is large, and every loader result carries it.
        #[source]
        source: Box<candle_core::Error>,
    },
    #[error("{path}: {source}")]
    TensorTooLarge {
        path: PathBuf,
        #[source]
        source: crate::util::mem::AllocError,
    },
    #[error("{path}: tensor {tensor:?} appears in more than one shard; the shards overlap, so use the set of shards that came with the model")]
    DuplicateTensor { path: PathBuf, tensor: String },
    #[error("{path}: not a readable GGUF file: {source}")]
    Gguf {
        path: PathBuf,
        #[source]
        source: gguf_header::GgufError,
    },
    #[error("{path}: not a readable safetensors file ({source}); it may be truncated or not a safetensors file")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("{origin}: weight {name:?} holds {what} (at element {index}); refusing to load a model whose outputs would be {what} too. The file is corrupt or was saved after training diverged")]
    NonFinite {
        origin: String,
        name: String,
        what: &'static str,
        index: usize,
    },
    #[error(transparent)]
    Read(#[from] crate::util::fs::ReadError),
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        ModelError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
