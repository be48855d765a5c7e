//! The dataset the workbench sweeps, and the dataset pane's state.
//!
//! A dataset (`--dataset FILE`, or a session's) is kept here as loaded:
//! its pairs and their position labels. The prompt editor normally holds
//! all of its pairs, and sweeps run over them; "open one pair alone" puts
//! one pair in the editor instead (`alone`), so it can be edited, swept and
//! drilled into by itself, and the whole set comes back with one key
//! (`dataset::all_pairs`). The dataset stays in the session either way.
//!
//! Each pair's clean and corrupted baselines are measured on the model
//! thread (`Request::Baselines`), independently of any sweep, and kept
//! with a key of the pairs and BOS choice they were measured on, so an
//! edit makes them out of date rather than wrong.
//!
//! Plain data only; `dataset` holds the transitions that act on it.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::data::{Dataset, DatasetPair, Labels};
use crate::patching::result::Baselines;
use crate::patching::PromptPair;

use super::messages::{JobId, PairsInput};

/// The workbench's dataset and the dataset pane.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatasetState {
    /// Where the dataset came from (its file's name), for the pane's title;
    /// `None` while the workbench has no dataset (the pane then lists the
    /// editor's pairs).
    pub name: Option<String>,
    /// The dataset's pairs, as loaded (or as last edited, see
    /// `dataset_edits`).
    pub pairs: Vec<PromptPair>,
    /// The same pairs as the dataset holds them (ids, answer lists, labels).
    pub source: Vec<DatasetPair>,
    /// Each pair's position labels, or empty when none is labelled.
    pub labels: Vec<Labels>,
    /// The pair the prompt editor holds alone (index into `pairs`);
    /// `None`: the editor holds every pair.
    pub alone: Option<usize>,
    /// Baselines measured on the model thread.
    pub measured: Option<Measured>,
    /// The baselines job in flight.
    pub measuring: Option<Measuring>,
    /// The pane is shown in the heatmap's place.
    pub shown: bool,
    /// Index into the listed rows.
    pub selected: usize,
    /// List only the pairs whose clean run does not prefer the answer.
    pub failing_only: bool,
    /// List the pairs by their clean logit difference, lowest (most
    /// failing) first, instead of in the dataset's order.
    pub by_clean: bool,
}

/// Per-pair baselines and what they were measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// [`input_key`] of the pairs and model measured.
    pub key: u64,
    /// Per pair: not measured yet, its baselines, or why it cannot run.
    pub values: Vec<Option<Result<Baselines, String>>>,
}

/// A baselines job in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measuring {
    pub job: JobId,
    pub done: usize,
    pub total: usize,
}

impl DatasetState {
    /// The state for a freshly loaded dataset named `name`.
    pub fn of(ds: &Dataset, name: String) -> Self {
        let labelled = ds.has_labels();
        DatasetState {
            name: Some(name),
            pairs: ds.prompt_pairs(),
            source: ds.pairs.clone(),
            labels: if labelled {
                ds.pairs.iter().map(|p| p.labels.clone()).collect()
            } else {
                vec![]
            },
            ..Default::default()
        }
    }

    /// The workbench has a dataset (not only pairs typed in).
    pub fn loaded(&self) -> bool {
        self.name.is_some()
    }

    /// Every pair of the set, given the editor's pairs: those, or while
    /// one pair is alone, the dataset's with that pair as edited.
    pub fn whole_pairs(&self, editor: &[PromptPair]) -> Vec<PromptPair> {
        let Some(i) = self.alone else {
            return editor.to_vec();
        };
        let mut all = self.pairs.clone();
        if let (Some(slot), Some(p)) = (all.get_mut(i), editor.first()) {
            *slot = p.clone();
        }
        all
    }

    /// The labels to sweep `pairs` (the editor's) with: the dataset's,
    /// when the editor holds the whole labelled dataset; else none.
    pub fn labels_for(&self, pairs: &[PromptPair]) -> Vec<Labels> {
        if self.alone.is_none() && !self.labels.is_empty() && self.labels.len() == pairs.len() {
            self.labels.clone()
        } else {
            vec![]
        }
    }

    /// The baselines measured for the pairs of `key`, if those are current.
    pub fn measured_for(&self, key: u64) -> Option<&Measured> {
        self.measured.as_ref().filter(|m| m.key == key)
    }
}

/// A key of the pairs, BOS choice and model (its fingerprint) baselines
/// are measured with.
pub fn input_key(pairs: &[PromptPair], prepend_bos: Option<bool>, model: &str) -> u64 {
    let mut h = DefaultHasher::new();
    model.hash(&mut h);
    prepend_bos.hash(&mut h);
    for p in pairs {
        (&p.clean, &p.corrupted, &p.answer, &p.wrong).hash(&mut h);
    }
    h.finish()
}

/// The position labels of `input` resolved against its prepared pairs
/// (`data::align`, the CLI's rules), or `None` when it has none.
pub fn align_labels(
    input: &PairsInput,
    prepared: &[crate::patching::PreparedPair],
) -> Result<Option<crate::patching::PositionLabels>, String> {
    if input.labels.is_empty() {
        return Ok(None);
    }
    let pairs = input
        .pairs
        .iter()
        .zip(&input.labels)
        .map(|(p, l)| crate::data::DatasetPair {
            id: None,
            clean: p.clean.clone(),
            corrupted: p.corrupted.clone().unwrap_or_default(),
            answer: p.answer.clone(),
            wrong: p.wrong.clone(),
            answers: vec![],
            wrongs: vec![],
            labels: l.clone(),
        })
        .collect();
    let ds = Dataset {
        pairs,
        path: None,
        digest: String::new(),
        lines: vec![],
    };
    crate::data::align(&ds, prepared).map_err(|e| e.to_string())
}
