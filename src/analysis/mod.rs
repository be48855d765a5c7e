//! Drill-down computations on a loaded model: what the UI shows when the
//! user presses Enter on a heatmap cell, plus the small measurements the
//! sweep pane needs (forward timing, baselines for partial results).
//!
//! Everything here runs on the worker thread, which owns the model; every
//! function takes a [`LoadedModel`] and a [`PreparedPair`] and returns plain
//! data (`Vec<f32>`, strings, small structs) that can cross to the UI thread.
//! No ratatui and no terminal here; no candle tensor leaves this module.
//!
//! - `head`: one attention head (patterns, top attended tokens, direct
//!   logit attribution);
//! - `mlp`: one MLP layer (per-position change, top neurons, promoted tokens)
//!   and one attention layer (per-head attribution);
//! - `lens`: the logit lens on a residual-stream cell;
//! - `estimate`: forward timing and sweep cost estimates.
//!
//! Direct logit attribution uses the *frozen* final norm: a component `c`
//! added to the residual stream contributes `(c − mean c) / s · w_ln ·
//! (W_U[:, answer] − W_U[:, wrong])` to the logit difference, with `s` the
//! final norm's scale of the run at the last position (no centring for
//! RMSNorm), as TransformerLens's `apply_ln_to_stack` does.

pub mod estimate;
pub mod head;
pub mod lens;
pub mod mlp;
mod util;

pub use estimate::{Estimate, ForwardTiming};
pub use head::HeadDrill;
pub use lens::LensDrill;
pub use mlp::{AttnDrill, MlpDrill, NeuronEffect};

/// A token with a score (a probability, a logit or an attention weight).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Position in the prompt (for attended tokens) or token id.
    pub index: usize,
    pub token: String,
    pub value: f32,
}

/// A drill-down computation that failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{0}")]
    Invalid(String),
    #[error("tensor operation failed during the drill-down: {0}")]
    Candle(#[from] candle_core::Error),
}
