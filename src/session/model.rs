//! The session data model: what an investigation is, as plain serialisable
//! data. Reading and writing YAML lives in `io.rs`; nothing here touches
//! files.
//!
//! A hand-written session needs only `version`, `model.source` and one
//! prompt pair; everything else has defaults and is filled in by patchbench.
//! Field order here is the order in the file, so the cheap, human parts
//! (model, prompts, sweep specs) come before the bulky stored results.

use serde::{Deserialize, Serialize};

use super::circuit::CircuitEntry;
use super::dataset::DatasetRef;
use crate::patching::output::TokenList;
use crate::patching::{PromptPair, SweepResult, SweepSpec};

/// The session format version this build writes.
pub const SESSION_VERSION: u32 = 1;

/// Every format version this build reads.
pub const READABLE_VERSIONS: &[u32] = &[1];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub version: u32,
    pub model: ModelRef,
    /// Prepend BOS to prompts: `true`, `false`, or absent for the
    /// tokenizer's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend_bos: Option<bool>,
    pub prompts: Vec<PromptPair>,
    /// A dataset of prompt pairs that the sweeps run over instead of
    /// `prompts` (see `dataset.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetRef>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    #[serde(default)]
    pub ui: UiState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweeps: Vec<SweepEntry>,
    /// Circuit searches (`circuit.rs`), after the sweeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circuits: Vec<CircuitEntry>,
}

/// Which model the session was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// A model source string (`demo`, `gpt2`, a path, ...).
    pub source: String,
    /// Fingerprint of weights and tokenizer when the results were computed;
    /// results are stale when the loaded model's differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One sweep of the session: its definition and, once run, its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepEntry {
    pub spec: SweepSpec,
    /// Indices into `prompts`; absent = all pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StoredResult>,
}

/// A sweep result with what is needed to show it without the model.
///
/// Token lists and answers are those of the first prompt pair the sweep
/// used (all pairs of a sweep share one token length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredResult {
    /// Model fingerprint the result was computed with.
    pub fingerprint: String,
    /// Digest of what the result was computed from (the sweep spec, the
    /// prompt pairs it used and the BOS choice; see `stale.rs`): a result
    /// whose inputs were edited afterwards is stale. Empty = not recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inputs: String,
    /// RFC 3339 time of computation (UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub computed_at: String,
    /// Model load time of the run that computed it (for the JSON export's
    /// `timing.load_ms`).
    #[serde(default)]
    pub load_ms: f64,
    pub clean_tokens: TokenList,
    pub corrupted_tokens: TokenList,
    pub answer: String,
    pub answer_id: u32,
    pub wrong: String,
    pub wrong_id: u32,
    pub result: SweepResult,
}

/// UI state worth keeping between sittings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiState {
    pub selected_sweep: usize,
    /// Multi-index of the heatmap cursor in the selected sweep's axes.
    pub cell: Vec<usize>,
    pub metric: String,
    pub selected_pair: usize,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            selected_sweep: 0,
            cell: vec![],
            metric: crate::patching::metrics::DEFAULT_METRIC.def().name.into(),
            selected_pair: 0,
        }
    }
}

impl Session {
    /// A new session on `source` with one prompt pair.
    pub fn new(source: &str, pair: PromptPair) -> Self {
        Self {
            version: SESSION_VERSION,
            model: ModelRef {
                source: source.to_string(),
                fingerprint: None,
            },
            prepend_bos: None,
            prompts: vec![pair],
            dataset: None,
            sweeps: vec![],
            circuits: vec![],
            notes: String::new(),
            ui: UiState::default(),
        }
    }
}
