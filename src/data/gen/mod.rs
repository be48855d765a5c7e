//! Seeded dataset generators: IOI, facts, induction and greater-than pairs
//! for one model's tokenizer, written as ordinary dataset files.
//!
//! A generator draws candidate pairs from templates and word lists and
//! keeps only those a sweep can use with this tokenizer: clean and
//! corrupted prompts of equal token length, one-token answers, no word the
//! tokenizer maps to its unknown token (and, with `tokens`, exactly that
//! many tokens). Every candidate it drops is counted under its reason, so
//! a generator that keeps little says why.
//!
//! Two word styles: `Demo` uses the embedded demo model's own vocabulary
//! and templates (lower-case words, one token each; the IOI name pairs are
//! those held out of its training), `English` the IOI paper's kind of
//! templates with capitalised names and space-prefixed answers, for
//! GPT-2-like tokenizers. Position labels (`IO`, `S1`, `S2`, `END`, ...)
//! are computed by tokenising each prompt's prefix, so they are token
//! positions for this tokenizer.

mod tasks;
mod words;

use std::collections::BTreeMap;

use crate::model::Tokenizer;
use crate::patching::prepare::prepare_pair;
use crate::patching::PairError;

use super::dataset::{Dataset, DatasetPair, Labels, Span};
use super::stats::SplitMix;

/// The tasks a generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Ioi,
    Facts,
    Induction,
    GreaterThan,
}

impl Task {
    pub const ALL: [(&'static str, Task); 4] = [
        ("ioi", Task::Ioi),
        ("facts", Task::Facts),
        ("induction", Task::Induction),
        ("greater-than", Task::GreaterThan),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Which word lists and templates to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Demo,
    English,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub task: Task,
    pub style: Style,
    pub n: usize,
    pub seed: u64,
    pub prepend_bos: Option<bool>,
    /// Keep only pairs of exactly this many tokens.
    pub tokens: Option<usize>,
}

/// What a generator produced and what it dropped.
#[derive(Debug, Clone)]
pub struct Generated {
    pub dataset: Dataset,
    /// Reason -> number of candidates dropped for it.
    pub dropped: BTreeMap<String, usize>,
    pub candidates: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenError {
    #[error(
        "kept only {kept} of the {wanted} pairs asked for after {tried} candidates ({}) — {hint}",
        reasons(dropped)
    )]
    TooFew {
        kept: usize,
        wanted: usize,
        tried: usize,
        dropped: BTreeMap<String, usize>,
        hint: String,
    },
    #[error("the {task} generator has no {style} templates")]
    NoTemplates {
        task: &'static str,
        style: &'static str,
    },
}

fn reasons(d: &BTreeMap<String, usize>) -> String {
    if d.is_empty() {
        return "none dropped".into();
    }
    d.iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A candidate: the pair and its labels as character ranges of the clean
/// prompt (`END` is added as the last token).
pub(crate) struct Candidate {
    pub pair: DatasetPair,
    pub marks: Vec<(&'static str, std::ops::Range<usize>)>,
}

/// At most this many candidates per pair asked for.
const TRIES_PER_PAIR: usize = 50;

/// Generates `opts.n` pairs.
pub fn generate(tok: &Tokenizer, opts: &GenOptions) -> Result<Generated, GenError> {
    let mut rng = SplitMix::new(opts.seed ^ (opts.task as u64).wrapping_mul(0x1000_0000_0001));
    let mut pairs = Vec::with_capacity(opts.n);
    let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
    let mut tried = 0;
    let limit = opts.n.saturating_mul(TRIES_PER_PAIR).max(100);
    let mut seen = std::collections::HashSet::new();
    while pairs.len() < opts.n && tried < limit {
        tried += 1;
        let Some(c) = tasks::candidate(opts.task, opts.style, &mut rng) else {
            return Err(GenError::NoTemplates {
                task: opts.task.name(),
                style: match opts.style {
                    Style::Demo => "demo",
                    Style::English => "English",
                },
            });
        };
        match keep(tok, c, opts) {
            Ok(mut p) => {
                if !seen.insert((p.clean.clone(), p.corrupted.clone())) {
                    *dropped
                        .entry("duplicates of a kept pair".into())
                        .or_default() += 1;
                    continue;
                }
                p.id = Some(format!("{}-{}", opts.task.name(), pairs.len()));
                pairs.push(p);
            }
            Err(reason) => *dropped.entry(reason).or_default() += 1,
        }
    }
    if pairs.len() < opts.n {
        let hint = match opts.style {
            Style::Demo => "the demo vocabulary is small; ask for fewer pairs or another task".into(),
            Style::English => "this tokenizer splits many of the generator's words; ask for fewer pairs, drop --tokens, or write the dataset by hand".into(),
        };
        return Err(GenError::TooFew {
            kept: pairs.len(),
            wanted: opts.n,
            tried,
            dropped,
            hint,
        });
    }
    Ok(Generated {
        dataset: Dataset::from_pairs(pairs),
        dropped,
        candidates: tried,
    })
}

/// The candidate as a dataset pair with token-position labels, or why not.
fn keep(tok: &Tokenizer, c: Candidate, opts: &GenOptions) -> Result<DatasetPair, String> {
    let prep = prepare_pair(tok, &c.pair.prompt_pair(), opts.prepend_bos, 0).map_err(reason)?;
    for a in c.pair.answers.iter().chain(&c.pair.wrongs) {
        if tok.single_token(a).is_err() {
            return Err("with a listed answer that is not one token".into());
        }
    }
    if let Some(n) = opts.tokens {
        if prep.n_pos() != n {
            return Err(format!("not {n} tokens long"));
        }
    }
    let mut labels = Labels::new();
    let count = |text: &str| {
        tok.encode(text, opts.prepend_bos)
            .map(|v| v.len())
            .unwrap_or(0)
    };
    for (name, r) in &c.marks {
        // A word's leading space belongs to its token in byte-level BPE
        // (GPT-2's `Ġ`) and SentencePiece (`▁`): cut the prefix before the
        // space, or "When " would end in a lone-space token that the word
        // then absorbs, and every label would look merged.
        let clean = c.pair.clean.as_str();
        let start = if r.start > 0 && clean.as_bytes()[r.start - 1] == b' ' {
            r.start - 1
        } else {
            r.start
        };
        let (a, b) = (count(&clean[..start]), count(&clean[..r.end]));
        let span = if b == a + 1 {
            Span::At(a as i64)
        } else if b > a {
            Span::Range([a as i64, b as i64])
        } else {
            return Err("with a labelled word that merges into its neighbour".into());
        };
        labels.insert((*name).to_string(), span);
    }
    labels.insert("END".into(), Span::At(-1));
    Ok(DatasetPair { labels, ..c.pair })
}

fn reason(e: PairError) -> String {
    match e {
        PairError::LengthMismatch { .. } => {
            "whose clean and corrupted prompts differ in token length"
        }
        PairError::Answer { .. } => "whose answer or wrong answer is not one token",
        PairError::UnknownWords { .. } => "with a word the tokenizer does not know",
        PairError::IdenticalPrompts { .. } => "whose prompts tokenise identically",
        PairError::SameAnswer { .. } => "whose answers are the same token",
        _ => "the tokenizer refused",
    }
    .into()
}
