//! A session's dataset: stored by path and content digest, or inline for
//! small sets, and resolved back to a [`Dataset`] when the session runs.
//!
//! When a session names a dataset, its sweeps run over the dataset's pairs
//! (a sweep's `pairs` indices then index the dataset); `prompts` stay for
//! the workbench's prompt editor. The dataset's digest is part of every
//! sweep's inputs digest, so a stored result computed on another version
//! of the file is stale: [`resolve`] reads the file, and when its digest
//! differs from the recorded one the caller records the new digest, which
//! turns the old results stale rather than silently mixing them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset, DatasetError, DatasetPair};

/// Datasets of at most this many pairs are stored inline by [`DatasetRef::of`].
pub const INLINE_MAX_PAIRS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    /// The dataset file, relative to the session file's directory (or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `sha256:…` of the file (of the inline pairs' JSONL when inline).
    pub digest: String,
    /// The pairs themselves, for small datasets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<DatasetPair>,
}

impl DatasetRef {
    /// A reference to `ds`: inline when it has at most [`INLINE_MAX_PAIRS`]
    /// pairs (or no file), else its path (relative to `session_dir` when
    /// inside it) and digest.
    pub fn of(ds: &Dataset, session_dir: Option<&Path>) -> Self {
        match &ds.path {
            Some(p) if ds.len() > INLINE_MAX_PAIRS => {
                let rel = session_dir
                    .and_then(|d| p.strip_prefix(d).ok())
                    .unwrap_or(p);
                Self {
                    path: Some(rel.display().to_string()),
                    digest: ds.digest.clone(),
                    pairs: vec![],
                }
            }
            _ => {
                let inline = Dataset::from_pairs(ds.pairs.clone());
                Self {
                    path: None,
                    digest: inline.digest,
                    pairs: ds.pairs.clone(),
                }
            }
        }
    }

    /// Where the file is, for a session read from `session_path`.
    pub fn file(&self, session_path: Option<&Path>) -> Option<PathBuf> {
        let p = PathBuf::from(self.path.as_ref()?);
        Some(match session_path.and_then(Path::parent) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        })
    }
}

/// A session's dataset, read.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub dataset: Dataset,
    /// The file's digest differs from the one the session recorded.
    pub changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetRefError {
    #[error("the session's dataset: {0}")]
    Load(#[from] DatasetError),
    #[error("the session's dataset names neither a file (`path`) nor inline `pairs`; give one")]
    Empty,
}

/// Reads the dataset `r` names (the file, or the inline pairs).
pub fn resolve(r: &DatasetRef, session_path: Option<&Path>) -> Result<Resolved, DatasetRefError> {
    let dataset = match r.file(session_path) {
        Some(f) => data::load(&f)?,
        None if r.pairs.is_empty() => return Err(DatasetRefError::Empty),
        None => Dataset::from_pairs(r.pairs.clone()),
    };
    Ok(Resolved {
        changed: dataset.digest != r.digest,
        dataset,
    })
}

/// The pairs of `ds` a sweep runs on: those `entry.pairs` lists, or all.
pub fn entry_subset(ds: &Dataset, entry: &crate::session::SweepEntry) -> Result<Dataset, String> {
    let Some(idx) = &entry.pairs else {
        return Ok(ds.clone());
    };
    let mut pairs = Vec::with_capacity(idx.len());
    let mut lines = Vec::with_capacity(idx.len());
    for &i in idx {
        let p = ds.pairs.get(i).ok_or_else(|| {
            format!(
                "pair {i} does not exist (the dataset has {} pairs, numbered from 0)",
                ds.len()
            )
        })?;
        pairs.push(p.clone());
        lines.push(ds.line(i));
    }
    Ok(Dataset {
        pairs,
        lines,
        ..ds.clone()
    })
}
