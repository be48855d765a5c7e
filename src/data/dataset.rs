//! The dataset types: prompt pairs as a file holds them, with optional
//! multi-answer lists and position labels, and the content digest a session
//! uses to notice that the file changed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::patching::PromptPair;

/// Where a label sits in a pair's clean prompt, in token positions: one
/// position, or a half-open span `[start, end)`. Negative positions count
/// from the end (`-1` = the last token), so `END` can be written once for
/// prompts of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    At(i64),
    Range([i64; 2]),
}

impl Span {
    /// The absolute positions of the span in a prompt of `n` tokens, or
    /// `None` when it falls outside or is empty.
    pub fn resolve(&self, n: usize) -> Option<std::ops::Range<usize>> {
        let abs = |i: i64| -> Option<usize> {
            let n = n as i64;
            let a = if i < 0 { n + i } else { i };
            (0..=n).contains(&a).then_some(a as usize)
        };
        let r = match *self {
            Span::At(i) => {
                let a = abs(i)?;
                a..a + 1
            }
            Span::Range([s, e]) => abs(s)?..abs(e)?,
        };
        (r.start < r.end && r.end <= n).then_some(r)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::At(i) => write!(f, "{i}"),
            Span::Range([s, e]) => write!(f, "{s}..{e}"),
        }
    }
}

/// Label name -> where it sits.
pub type Labels = BTreeMap<String, Span>;

/// One prompt pair of a dataset, as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub clean: String,
    pub corrupted: String,
    /// The answer the clean run should give (one token).
    pub answer: String,
    /// The competing answer (one token).
    pub wrong: String,
    /// Further answers, for multi-answer metrics (each one token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrongs: Vec<String>,
    /// Position labels of the clean prompt (`S1`, `IO`, `S2`, `END`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

impl DatasetPair {
    /// The pair as a sweep takes it.
    pub fn prompt_pair(&self) -> PromptPair {
        PromptPair {
            clean: self.clean.clone(),
            corrupted: Some(self.corrupted.clone()),
            answer: self.answer.clone(),
            wrong: self.wrong.clone(),
        }
    }

    /// A short name for messages: the id, else the 1-based line (`#3`).
    pub fn name(&self, index: usize) -> String {
        match &self.id {
            Some(id) => format!("{:?}", crate::util::text::clip(id, 40)),
            None => format!("#{}", index + 1),
        }
    }
}

/// A loaded dataset: its pairs, where they came from and a digest of the
/// file's bytes (`sha256:…`), so a session notices an edited file.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub pairs: Vec<DatasetPair>,
    pub path: Option<PathBuf>,
    pub digest: String,
    /// The 1-based line each pair starts on in its file (empty: the pairs
    /// are numbered from 1).
    pub lines: Vec<usize>,
}

impl Dataset {
    /// A dataset of in-memory pairs; its digest is that of its JSONL text.
    pub fn from_pairs(pairs: Vec<DatasetPair>) -> Self {
        let digest = digest(to_jsonl(&pairs).as_bytes());
        Self {
            pairs,
            path: None,
            digest,
            lines: vec![],
        }
    }

    /// The line pair `i` starts on.
    pub fn line(&self, i: usize) -> usize {
        self.lines.get(i).copied().unwrap_or(i + 1)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn prompt_pairs(&self) -> Vec<PromptPair> {
        self.pairs.iter().map(DatasetPair::prompt_pair).collect()
    }

    /// Whether any pair carries position labels.
    pub fn has_labels(&self) -> bool {
        self.pairs.iter().any(|p| !p.labels.is_empty())
    }

    pub fn to_jsonl(&self) -> String {
        to_jsonl(&self.pairs)
    }
}

/// One JSON object per line, fields in a fixed order.
pub fn to_jsonl(pairs: &[DatasetPair]) -> String {
    let mut out = String::new();
    for p in pairs {
        out.push_str(&serde_json::to_string(p).expect("plain data serialises"));
        out.push('\n');
    }
    out
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_resolve_from_either_end() {
        assert_eq!(Span::At(2).resolve(5), Some(2..3));
        assert_eq!(Span::At(-1).resolve(5), Some(4..5));
        assert_eq!(Span::Range([1, 3]).resolve(5), Some(1..3));
        assert_eq!(Span::Range([-2, 5]).resolve(5), Some(3..5));
        assert_eq!(Span::At(5).resolve(5), None);
        assert_eq!(Span::At(-6).resolve(5), None);
        assert_eq!(Span::Range([3, 3]).resolve(5), None);
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
