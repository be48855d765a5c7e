//! Circuit searches in sessions: what was asked (`CircuitSpec`), what came
//! out (`StoredCircuit`), and when a stored circuit is stale.
//!
//! A session's `circuits` list sits after its sweeps (the bulky part of a
//! file comes last); sessions written before circuits existed have none and
//! load unchanged. A stored circuit keeps the top [`MAX_STORED_EDGES`]
//! edges of the ranking (every edge of a 12-layer model would be tens of
//! thousands of YAML lines; the workbench shows the top ones), the whole
//! faithfulness curve, the baselines and the timing, with the tokens and
//! answers of the first pair so it is shown without the model.
//!
//! Staleness follows sweeps (`results.rs`): another model fingerprint, or
//! a spec, prompt pairs or BOS choice edited after it ran. The inputs
//! digest is FNV-1a over a canonical text written field by field.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::circuits::{CircuitOptions, CircuitResult, Method};
use crate::patching::metrics::lookup;
use crate::patching::output::TokenList;
use crate::patching::{Corruption, Direction, PromptPair, SweepSpec, Target};

use super::model::Session;
use super::results::{digest, Staleness};

/// Edges a stored circuit keeps, by rank.
pub const MAX_STORED_EDGES: usize = 100;

/// A circuit search of the session: its definition and, once run, its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitEntry {
    pub spec: CircuitSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StoredCircuit>,
}

/// Everything that defines a circuit search apart from the model and the
/// prompts (the options of `patchbench circuit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    pub method: Method,
    /// The metric edges are ranked by.
    #[serde(default = "default_metric")]
    pub metric: String,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub corruption: Corruption,
    #[serde(default = "default_ig_steps")]
    pub ig_steps: usize,
    #[serde(default = "default_check_exact")]
    pub check_exact: usize,
    #[serde(default = "default_points")]
    pub faithfulness_points: usize,
    /// Position-aware edges (`circuit --positions`); absent when off, so
    /// sessions written before it existed load and digest unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positions: bool,
}

fn default_metric() -> String {
    "logit_diff".into()
}
fn default_ig_steps() -> usize {
    CircuitOptions::default().ig_steps
}
fn default_check_exact() -> usize {
    CircuitOptions::default().check_exact
}
fn default_points() -> usize {
    CircuitOptions::default().faithfulness_points
}

impl CircuitSpec {
    /// The CLI's defaults for `method`.
    pub fn new(method: Method) -> Self {
        let d = CircuitOptions::default();
        CircuitSpec {
            method,
            metric: default_metric(),
            direction: d.direction,
            corruption: d.corruption,
            ig_steps: d.ig_steps,
            check_exact: d.check_exact,
            faithfulness_points: d.faithfulness_points,
            positions: false,
        }
    }

    /// The options `run_circuit` takes; an unknown metric is an error
    /// naming the registry's metrics.
    pub fn options(&self) -> Result<CircuitOptions, String> {
        let (metric, _) = lookup(&self.metric).ok_or_else(|| {
            format!(
                "unknown metric {:?}; metrics are: {}",
                self.metric,
                crate::patching::METRICS.join(", ")
            )
        })?;
        Ok(CircuitOptions {
            method: self.method,
            direction: self.direction,
            corruption: self.corruption.clone(),
            ig_steps: self.ig_steps.max(1),
            metric,
            check_exact: self.check_exact,
            faithfulness_points: self.faithfulness_points,
            positions: self.positions,
            ..CircuitOptions::default()
        })
    }
}

/// A finished circuit search with what is needed to show it without the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCircuit {
    /// Model fingerprint the result was computed with.
    pub fingerprint: String,
    /// Digest of the spec, prompt pairs and BOS choice ([`circuit_digest`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inputs: String,
    /// RFC 3339 time of computation (UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub computed_at: String,
    pub clean_tokens: TokenList,
    pub corrupted_tokens: TokenList,
    pub answer: String,
    pub wrong: String,
    /// Position-aware searches over labelled pairs of one length: each
    /// token position's label (`circuits::positions::label_names`), shown
    /// beside an edge's position; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub position_labels: Vec<Option<String>>,
    /// The result, its `edges` cut to the top [`MAX_STORED_EDGES`]
    /// (`n_edges` still counts every edge of the graph).
    pub result: CircuitResult,
}

impl StoredCircuit {
    /// Cuts the ranked edges to what a session keeps.
    pub fn trimmed(mut self) -> Self {
        self.result.edges.truncate(MAX_STORED_EDGES);
        self
    }
}

/// Digest of what a circuit search is computed from: its spec, the prompt
/// pairs (in order) and the BOS choice.
pub fn circuit_digest(
    spec: &CircuitSpec,
    pairs: &[&PromptPair],
    prepend_bos: Option<bool>,
) -> String {
    // The direction, corruption, pairs and BOS choice, written as a sweep's.
    let mut sweep = SweepSpec::new(Target::ResidPre);
    sweep.direction = spec.direction;
    sweep.corruption = spec.corruption.clone();
    let base = digest(&sweep, pairs, prepend_bos);
    let mut t = String::new();
    let _ = write!(
        t,
        "circuit method={} metric={} ig_steps={} check_exact={} faithfulness_points={} base={base}",
        spec.method.name(),
        spec.metric,
        spec.ig_steps,
        spec.check_exact,
        spec.faithfulness_points
    );
    // Only when on: digests of position-free searches stay as they were.
    if spec.positions {
        t.push_str(" positions");
    }
    let h = t.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

/// Why `stored`, a result of `spec`, cannot be trusted as current, if it
/// cannot: computed with another model than `current` (the loaded model's
/// fingerprint, or the one the session recorded), or from other prompt
/// pairs, BOS choice or spec than these.
pub fn circuit_staleness(
    spec: &CircuitSpec,
    stored: &StoredCircuit,
    pairs: &[&PromptPair],
    prepend_bos: Option<bool>,
    current: Option<&str>,
) -> Option<Staleness> {
    if let Some(cur) = current {
        if stored.fingerprint != cur {
            return Some(Staleness::ModelChanged {
                stored: stored.fingerprint.clone(),
                current: cur.to_string(),
            });
        }
    }
    (!stored.inputs.is_empty() && stored.inputs != circuit_digest(spec, pairs, prepend_bos))
        .then_some(Staleness::InputsChanged)
}

/// The stored circuits of `session` that cannot be trusted as current,
/// with why. Without `current`, the fingerprint the session recorded
/// stands in for the loaded model's.
pub fn stale_circuits(session: &Session, current: Option<&str>) -> Vec<(usize, Staleness)> {
    let current = current.or(session.model.fingerprint.as_deref());
    let pairs: Vec<&PromptPair> = session.prompts.iter().collect();
    session
        .circuits
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let r = e.result.as_ref()?;
            circuit_staleness(&e.spec, r, &pairs, session.prepend_bos, current).map(|w| (i, w))
        })
        .collect()
}
