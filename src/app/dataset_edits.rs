//! Pair edits in a workbench that sweeps a dataset.
//!
//! A session names its dataset by file (path and digest) or keeps the pairs
//! inline, and a result is current while the dataset's digest is the one it
//! was computed on. Opening the session reads the pairs from the dataset, so
//! an edit made in the prompt editor would neither mark those results stale
//! nor survive the next opening. Instead, the first edit that makes the
//! pairs differ from the dataset's gives the session its own copy: the
//! edited pairs inline (ids, answer lists and labels kept where the pair's
//! clean prompt is unchanged), with their own digest. Results computed on
//! the file's pairs are then stale, the edit is saved with the session, and
//! the file itself is never written.

use crate::data::{Dataset, DatasetPair};
use crate::patching::PromptPair;
use crate::session::dataset::DatasetRef;

use super::state::{AppState, Level};

/// After a prompt edit: when the pairs no longer equal the dataset's, the
/// session keeps the edited pairs inline (see the module docs). Returns
/// whether it did.
pub fn follow_edits(s: &mut AppState) -> bool {
    if s.session.dataset.is_none() || !s.dataset.loaded() {
        return false;
    }
    let whole = s.dataset.whole_pairs(&s.prompts.to_pairs());
    if whole == s.dataset.pairs {
        return false;
    }
    let edited: Vec<DatasetPair> = whole
        .iter()
        .enumerate()
        .map(|(i, p)| edited_pair(s.dataset.source.get(i), p))
        .collect();
    let ds = Dataset::from_pairs(edited);
    let file = s.session.dataset.as_ref().and_then(|r| r.path.clone());
    s.session.dataset = Some(DatasetRef::of(&ds, None));
    s.session.dirty = true;
    s.dataset.labels = if ds.has_labels() {
        ds.pairs.iter().map(|p| p.labels.clone()).collect()
    } else {
        vec![]
    };
    s.dataset.source = ds.pairs;
    s.dataset.pairs = whole;
    if let Some(file) = file {
        s.set_status(
            Level::Info,
            format!(
                "pairs edited: the session now keeps its own copy of them (saved inline); \
                 {file} is unchanged"
            ),
        );
    }
    true
}

/// `p` as a dataset pair, keeping what `base` (the pair it replaces) holds
/// beyond the editor's four fields; position labels only while the clean
/// prompt they mark is unchanged.
fn edited_pair(base: Option<&DatasetPair>, p: &PromptPair) -> DatasetPair {
    let mut out = base.cloned().unwrap_or_else(|| DatasetPair {
        id: None,
        clean: String::new(),
        corrupted: String::new(),
        answer: String::new(),
        wrong: String::new(),
        answers: vec![],
        wrongs: vec![],
        labels: Default::default(),
    });
    if out.clean != p.clean {
        out.labels = Default::default();
    }
    out.clean = p.clean.clone();
    out.corrupted = p.corrupted.clone().unwrap_or_default();
    out.answer = p.answer.clone();
    out.wrong = p.wrong.clone();
    out
}
