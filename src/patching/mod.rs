//! Activation patching sweeps: a [`SweepSpec`] over prompt pairs becomes
//! planned patched runs and a [`SweepResult`] holding every metric.
//!
//! - `spec`: targets, directions, corruptions (serialisable);
//! - `validate`: specs and targets refused before anything runs;
//! - `prepare`: prompt pairs to validated token ids;
//! - `plan`: the cells of a target;
//! - `runs`: the unpatched runs and the activations patched between them;
//! - `corrupt`: noise and ablation corruptions of the clean prompt;
//! - `engine`: naive and fast execution, progress and cancellation;
//! - `metrics`, `result`: what a patched run scores and how it is stored;
//! - `reference`: an independent one-forward-per-cell reference sharing no
//!   planning code with the engine, for tests;
//! - `output`: the machine-readable JSON/CSV contract and the text table.

pub mod attribution;
pub(crate) mod batches;
pub mod checkpoint;
pub(crate) mod corrupt;
pub mod engine;
pub mod error;
pub(crate) mod execute;
pub mod masks;
pub mod metrics;
pub mod output;
pub mod part;
pub mod plan;
pub mod prepare;
pub mod reference;
pub mod result;
pub mod runs;
pub mod shard_set;
pub mod sharded;
pub mod spec;
pub mod validate;
pub mod work;

pub use engine::{run_sweep, run_sweep_labeled, run_sweep_with, EngineOptions, Method, Progress};
pub use error::SweepError;
pub use metrics::{Metrics, METRICS};
pub use plan::PositionLabels;
pub use prepare::{prepare_each, prepare_pairs, PairError, PreparedPair, PromptPair};
pub use result::SweepResult;
pub use spec::{Corruption, Direction, SweepSpec, Target};
pub use validate::{available_targets, SpecError, MAX_SAMPLES};

#[cfg(test)]
pub(crate) mod metrics_tests;
