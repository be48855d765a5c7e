//! The embedded demo model: a small GPT-2 that patchbench trains itself on a
//! synthetic corpus of tasks studied in the literature, so the first sweep a
//! newcomer runs shows something true, offline, in seconds.
//!
//! - `vocab`, `corpus`: the word lists and the seeded document generator
//!   (indirect object identification, capitals, induction), with held-out
//!   name pairs for testing;
//! - `tokenizer`: the word-level `tokenizer.json`;
//! - `params`, `train`: seeded initialisation and the AdamW loop, through the
//!   same canonical forward pass the patching engine uses;
//! - `export`: canonical weights to a Hugging Face GPT-2 directory;
//! - `embedded`: the committed `assets/demo/` files compiled into the binary,
//!   loaded through the ordinary GPT-2 mapping;
//! - `eval`: held-out accuracies;
//! - `circuits`: prompt pairs and attention scores for the investigations
//!   that `tests/demo.rs` pins;
//! - `rng`: the generator that makes all of this reproducible.
//!
//! `README.md` beside this file describes the tasks and the circuits found
//! in the shipped weights.

pub mod circuits;
pub mod corpus;
pub mod embedded;
pub mod eval;
pub mod export;
pub mod params;
pub mod rng;
pub mod tokenizer;
pub mod train;
pub mod vocab;

use std::path::{Path, PathBuf};

use crate::model::tokenizer::TokenizerError;
use crate::model::ModelError;

/// Everything that can go wrong building, training or saving the demo model.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor operation failed during {stage}: {source}")]
    Candle {
        stage: &'static str,
        source: candle_core::Error,
    },
    #[error("training diverged at step {step} (loss {loss}); try a lower peak learning rate or another seed")]
    Diverged { step: usize, loss: f32 },
    #[error("exporting the demo model: {0}")]
    Export(String),
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

impl DemoError {
    fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        DemoError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Names the stage a candle error happened in.
pub(crate) trait Stage<T> {
    fn during(self, stage: &'static str) -> Result<T, DemoError>;
}

impl<T> Stage<T> for candle_core::Result<T> {
    fn during(self, stage: &'static str) -> Result<T, DemoError> {
        self.map_err(|source| DemoError::Candle { stage, source })
    }
}
