//! Why a sweep did not run or did not finish.

use super::prepare::PairError;
use super::validate::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("sweep cancelled")]
    Cancelled,
    /// Prompts or a corruption that do not fit together (lengths, context,
    /// noise positions, an ablation in the denoising direction).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Pair(#[from] PairError),
    /// An unpatched run whose logits are NaN or infinite: every value
    /// normalised against it would be meaningless.
    #[error(
        "pair {pair}: the {run} run's logits are not finite (NaN or infinite), so no patching \
         result against it would mean anything — the weights may be damaged, or a low-precision \
         dtype overflowed (try --weights f32)"
    )]
    NonFiniteBaseline { pair: usize, run: &'static str },
    /// Attribution asked of a quantized model.
    #[error(transparent)]
    NeedsFloatWeights(#[from] crate::model::forward::NeedsFloatWeights),
    /// The checkpoint of a resumable run could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error("tensor operation failed during the sweep: {0}")]
    Candle(#[from] candle_core::Error),
}
