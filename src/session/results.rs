//! Stored results: making one from a finished sweep, turning one back into
//! the DESIGN.md report for export, and deciding whether one is stale.
//!
//! A result is stale when the model that computed it differs from the model
//! now loaded (fingerprints differ), when what it was computed from (the
//! sweep spec, the prompt pairs it used, the BOS choice) was edited after
//! it ran, or when it lacks metrics this build computes (it was stored by
//! a build with fewer). Stale results stay in the session and are shown marked, never
//! mixed silently with fresh ones; rerunning replaces them.
//!
//! The inputs digest is FNV-1a over a canonical text written here field by
//! field rather than over serde output, so adding a defaulted field to a
//! spec struct does not turn every stored result stale.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::model::{LoadedModel, Tokenizer};
use crate::patching::output::{SweepReport, TokenList};
use crate::patching::{
    prepare_pairs, Corruption, PairError, PreparedPair, PromptPair, SweepResult, SweepSpec,
};

use super::model::{Session, StoredResult, SweepEntry};
use super::time::rfc3339;

/// Why a stored result cannot be trusted as current.
#[derive(Debug, Clone, PartialEq)]
pub enum Staleness {
    /// Computed with another model (or another version of it).
    ModelChanged { stored: String, current: String },
    /// The spec, the prompt pairs or the BOS choice changed since.
    InputsChanged,
    /// Stored without these metrics of this build's registry.
    MetricsMissing(Vec<String>),
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::ModelChanged { stored, current } => write!(
                f,
                "computed with a different model (fingerprint {stored}, loaded model {current})"
            ),
            Staleness::InputsChanged => {
                f.write_str("the sweep's spec or prompts were edited after it ran")
            }
            Staleness::MetricsMissing(names) => write!(
                f,
                "stored without the metric{} {} that this build computes",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ),
        }
    }
}

/// The prompt pairs a sweep uses, with their indices in the session.
pub fn entry_pairs<'a>(session: &'a Session, entry: &SweepEntry) -> Vec<(usize, &'a PromptPair)> {
    match &entry.pairs {
        Some(idx) => idx
            .iter()
            .filter_map(|&i| session.prompts.get(i).map(|p| (i, p)))
            .collect(),
        None => session.prompts.iter().enumerate().collect(),
    }
}

/// Tokenises the pairs of sweep `index`. Errors name pairs by their index
/// in the session's `prompts`, not in the sweep's subset.
pub fn prepare_entry(
    session: &Session,
    index: usize,
    tok: &Tokenizer,
) -> Result<Vec<PreparedPair>, PairError> {
    let entry = &session.sweeps[index];
    let (idx, pairs): (Vec<usize>, Vec<PromptPair>) = entry_pairs(session, entry)
        .into_iter()
        .map(|(i, p)| (i, p.clone()))
        .unzip();
    prepare_pairs(tok, &pairs, session.prepend_bos).map_err(|e| renumber(e, &idx))
}

fn renumber(e: PairError, idx: &[usize]) -> PairError {
    e.reindex(|i| idx.get(i).copied().unwrap_or(i))
}

/// Digest of everything `entry` of `session` is computed from.
pub fn inputs_digest(session: &Session, entry: &SweepEntry) -> String {
    if let Some(d) = &session.dataset {
        // The sweep runs over the dataset: its digest (and the subset)
        // stands for the pairs.
        let spec = digest(&entry.spec, &[], session.prepend_bos);
        let t = format!("{spec}\ndataset={}\npairs={:?}\n", d.digest, entry.pairs);
        return format!("{:016x}", fnv1a(t.as_bytes()));
    }
    let pairs: Vec<&PromptPair> = entry_pairs(session, entry)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    digest(&entry.spec, &pairs, session.prepend_bos)
}

/// Digest of a sweep's inputs: its spec, the prompt pairs it runs on (in
/// order) and the BOS choice. For callers that hold these outside a
/// `Session` (the TUI, when a sweep finishes).
pub fn digest(spec: &SweepSpec, pairs: &[&PromptPair], prepend_bos: Option<bool>) -> String {
    let mut t = String::new();
    let s = spec;
    let _ = write!(
        t,
        "target={}\ndirection={}\nwindow={}\n",
        s.target, s.direction, s.window
    );
    match &s.corruption {
        Corruption::Prompt => t.push_str("corruption=prompt\n"),
        Corruption::Gaussian {
            positions,
            scale,
            samples,
            seed,
        } => {
            let _ = writeln!(
                t,
                "corruption=gaussian positions={positions:?} scale={scale:?} samples={samples} seed={seed}"
            );
        }
        Corruption::Zero { positions } => {
            let _ = writeln!(t, "corruption=zero positions={positions:?}");
        }
        Corruption::Mean { positions } => {
            let _ = writeln!(t, "corruption=mean positions={positions:?}");
        }
    }
    let _ = writeln!(t, "prepend_bos={prepend_bos:?}");
    for p in pairs {
        let _ = writeln!(
            t,
            "pair clean={:?} corrupted={:?} answer={:?} wrong={:?}",
            p.clean, p.corrupted, p.answer, p.wrong
        );
    }
    format!("{:016x}", fnv1a(t.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Packs a finished sweep of entry `index` for storing in the session.
pub fn store_result(
    session: &Session,
    index: usize,
    model: &LoadedModel,
    pairs: &[PreparedPair],
    result: SweepResult,
) -> StoredResult {
    let tok = &model.tokenizer;
    let tl = |ids: &[u32]| TokenList {
        ids: ids.to_vec(),
        strings: tok.token_strs(ids),
    };
    let first = pairs.first();
    let ids = |f: fn(&PreparedPair) -> &Vec<u32>| first.map(|p| f(p).clone()).unwrap_or_default();
    let (answer_id, wrong_id) = first.map(|p| (p.answer, p.wrong)).unwrap_or_default();
    StoredResult {
        fingerprint: model.fingerprint.clone(),
        inputs: inputs_digest(session, &session.sweeps[index]),
        computed_at: rfc3339(SystemTime::now()),
        load_ms: model.load_ms,
        clean_tokens: tl(&ids(|p| &p.clean)),
        corrupted_tokens: tl(&ids(|p| &p.corrupted)),
        answer: tok.token_str(answer_id),
        answer_id,
        wrong: tok.token_str(wrong_id),
        wrong_id,
        result,
    }
}

/// Why the result of `entry` is stale, if it is. `current` is the loaded
/// model's fingerprint; without one, the fingerprint the session last
/// recorded stands in for it.
pub fn staleness(
    session: &Session,
    entry: &SweepEntry,
    current: Option<&str>,
) -> Option<Staleness> {
    let r = entry.result.as_ref()?;
    let current = current.or(session.model.fingerprint.as_deref());
    if let Some(cur) = current {
        if r.fingerprint != cur {
            return Some(Staleness::ModelChanged {
                stored: r.fingerprint.clone(),
                current: cur.to_string(),
            });
        }
    }
    if !r.inputs.is_empty() && r.inputs != inputs_digest(session, entry) {
        return Some(Staleness::InputsChanged);
    }
    let missing = r.result.missing_metrics();
    if !missing.is_empty() {
        return Some(Staleness::MetricsMissing(
            missing.into_iter().map(String::from).collect(),
        ));
    }
    None
}

/// Every stale stored result: (sweep index, why).
pub fn stale_results(session: &Session, current: Option<&str>) -> Vec<(usize, Staleness)> {
    session
        .sweeps
        .iter()
        .enumerate()
        .filter_map(|(i, e)| staleness(session, e, current).map(|s| (i, s)))
        .collect()
}

/// The DESIGN.md report of a stored result, for `to_json` / `to_csv`.
pub fn report<'a>(session: &'a Session, entry: &'a SweepEntry) -> Option<SweepReport<'a>> {
    let r = entry.result.as_ref()?;
    Some(SweepReport {
        model: &session.model.source,
        spec: &entry.spec,
        clean: r.clean_tokens.clone(),
        corrupted: r.corrupted_tokens.clone(),
        answer: (r.answer_id, r.answer.clone()),
        wrong: (r.wrong_id, r.wrong.clone()),
        result: &r.result,
        load_ms: r.load_ms,
    })
}
