//! Prompt pairs: text in, validated token ids out.
//!
//! Position-wise patching needs the clean and corrupted prompts to have the
//! same number of tokens, and the metrics need single-token answers; both
//! are checked here with messages that show what the tokenizer produced.
//!
//! Inputs that would run but give wrong results are refused too: a word the
//! tokenizer maps to its unknown token (the demo vocabulary is lower-case
//! words, so "Mary" and "John" are both `<unk>` and the IOI pair becomes two
//! identical prompts), and clean and corrupted prompts that tokenise
//! identically (patching between them changes nothing).

use serde::{Deserialize, Serialize};

use crate::model::tokenizer::TokenizerError;
use crate::model::Tokenizer;

/// A clean/corrupted prompt pair with its answers, as the user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptPair {
    pub clean: String,
    /// The corrupted prompt; may be omitted for Gaussian-noise or ablation
    /// corruptions, where the clean prompt is corrupted in embedding space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupted: Option<String>,
    /// The answer the clean run should give (one token, e.g. " Paris").
    pub answer: String,
    /// The competing answer, usually the corrupted run's (e.g. " Rome").
    pub wrong: String,
}

/// A pair turned into token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPair {
    pub clean: Vec<u32>,
    /// Equal to `clean` when the pair has no corrupted prompt.
    pub corrupted: Vec<u32>,
    pub answer: u32,
    pub wrong: u32,
    /// Further answers and wrongs, for the multi-answer metric (a
    /// dataset's `answers` / `wrongs`; empty otherwise).
    pub sets: super::metrics::AnswerSets,
}

impl PreparedPair {
    pub fn n_pos(&self) -> usize {
        self.clean.len()
    }

    /// Positions where the clean and corrupted tokens differ.
    pub fn differing_positions(&self) -> Vec<usize> {
        (0..self.clean.len())
            .filter(|&i| self.clean[i] != self.corrupted[i])
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error(
        "pair {index}: the clean and corrupted prompts have different token lengths ({} vs {}), \
         but patching position by position needs equal lengths.\n  clean:     {}\n  corrupted: {}\n\
         Reword one prompt so both tokenise to the same number of tokens.",
        clean.len(), corrupted.len(), show(clean), show(corrupted)
    )]
    LengthMismatch {
        index: usize,
        clean: Vec<String>,
        corrupted: Vec<String>,
    },
    /// The answer or wrong answer (`what`) is not one token.
    #[error("pair {index}: {what}: {source}")]
    Answer {
        index: usize,
        what: &'static str,
        #[source]
        source: TokenizerError,
    },
    #[error("pair {index}: {source}")]
    Tokenize {
        index: usize,
        #[source]
        source: TokenizerError,
    },
    #[error("pair {index}: the clean prompt is empty")]
    Empty { index: usize },
    #[error("pair {index}: answer and wrong answer are the same token {token:?}, so the logit difference is always 0")]
    SameAnswer { index: usize, token: String },
    #[error("all prompt pairs of one sweep must have the same token length (pair 0 has {first}, pair {index} has {other})")]
    PairsDiffer {
        first: usize,
        index: usize,
        other: usize,
    },
    #[error(
        "the prompt pairs differ in token length ({}), but a position-indexed sweep lines pairs \
         up position by position — give the pairs position labels (S1, IO, S2, END, ...) so \
         positions line up by role, keep pairs of one length, or sweep a target without a \
         position axis (head_out, ...)",
        describe_groups(groups)
    )]
    LengthsDiffer { groups: Vec<(usize, Vec<usize>)> },
    #[error("no prompt pairs given")]
    NoPairs,
    #[error(
        "pair {index}: the tokenizer does not know {} in the {part} ({}): it maps {} to its \
         unknown token, which the model cannot tell apart — {hint}",
        if words.len() == 1 { "a word" } else { "words" },
        quoted(words),
        if words.len() == 1 { "it" } else { "them all" },
    )]
    UnknownWords {
        index: usize,
        part: &'static str,
        words: Vec<String>,
        hint: String,
    },
    #[error(
        "pair {index}: the clean and corrupted prompts tokenise identically ({}), so patching \
         between them changes nothing and every normalised value is NaN — make the corrupted \
         prompt differ in a token, or omit it and use a gaussian, zero or mean corruption",
        show(tokens)
    )]
    IdenticalPrompts { index: usize, tokens: Vec<String> },
}

/// `15 tokens: pairs 0, 1, 2; 17 tokens: pair 3`, long lists cut short.
pub(crate) fn describe_groups(groups: &[(usize, Vec<usize>)]) -> String {
    groups
        .iter()
        .map(|(n, idx)| {
            let shown: Vec<String> = idx.iter().take(8).map(|i| i.to_string()).collect();
            let more = match idx.len().saturating_sub(8) {
                0 => String::new(),
                k => format!(" and {k} more"),
            };
            let s = if idx.len() == 1 { "" } else { "s" };
            format!("{n} tokens: pair{s} {}{more}", shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PairError {
    /// The pair the error is about, if one.
    pub fn index(&self) -> Option<usize> {
        use PairError::*;
        match self {
            LengthMismatch { index, .. }
            | Answer { index, .. }
            | Tokenize { index, .. }
            | Empty { index }
            | SameAnswer { index, .. }
            | PairsDiffer { index, .. }
            | UnknownWords { index, .. }
            | IdenticalPrompts { index, .. } => Some(*index),
            LengthsDiffer { .. } | NoPairs => None,
        }
    }

    /// The same error for the pair numbered `at(index)` (a subset of a
    /// session's pairs is prepared with indices of the subset).
    pub fn reindex(self, at: impl Fn(usize) -> usize) -> PairError {
        use PairError::*;
        match self {
            LengthMismatch {
                index,
                clean,
                corrupted,
            } => LengthMismatch {
                index: at(index),
                clean,
                corrupted,
            },
            Answer {
                index,
                what,
                source,
            } => Answer {
                index: at(index),
                what,
                source,
            },
            Tokenize { index, source } => Tokenize {
                index: at(index),
                source,
            },
            Empty { index } => Empty { index: at(index) },
            SameAnswer { index, token } => SameAnswer {
                index: at(index),
                token,
            },
            PairsDiffer {
                first,
                index,
                other,
            } => PairsDiffer {
                first,
                index: at(index),
                other,
            },
            LengthsDiffer { groups } => LengthsDiffer {
                groups: groups
                    .into_iter()
                    .map(|(n, idx)| (n, idx.into_iter().map(&at).collect()))
                    .collect(),
            },
            NoPairs => NoPairs,
            UnknownWords {
                index,
                part,
                words,
                hint,
            } => UnknownWords {
                index: at(index),
                part,
                words,
                hint,
            },
            IdenticalPrompts { index, tokens } => IdenticalPrompts {
                index: at(index),
                tokens,
            },
        }
    }
}

/// Refuses text with words the tokenizer maps to its unknown token.
fn check_known(
    tok: &Tokenizer,
    text: &str,
    part: &'static str,
    index: usize,
) -> Result<(), PairError> {
    let words = tok
        .unknown_words(text)
        .map_err(|source| PairError::Tokenize { index, source })?;
    if words.is_empty() {
        return Ok(());
    }
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let hint = if lower
        .iter()
        .all(|w| tok.unknown_words(w).is_ok_and(|u| u.is_empty()))
    {
        format!("the vocabulary is lower-case: write {}", quoted(&lower))
    } else {
        "use words from the model's vocabulary".to_owned()
    };
    Err(PairError::UnknownWords {
        index,
        part,
        words,
        hint,
    })
}

fn show(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tokenises and validates one pair.
pub fn prepare_pair(
    tok: &Tokenizer,
    pair: &PromptPair,
    prepend_bos: Option<bool>,
    index: usize,
) -> Result<PreparedPair, PairError> {
    let enc = |text: &str| {
        tok.encode(text, prepend_bos)
            .map_err(|source| PairError::Tokenize { index, source })
    };
    let clean = enc(&pair.clean)?;
    if clean.is_empty() {
        return Err(PairError::Empty { index });
    }
    check_known(tok, &pair.clean, "clean prompt", index)?;
    let corrupted = match &pair.corrupted {
        Some(c) => {
            check_known(tok, c, "corrupted prompt", index)?;
            enc(c)?
        }
        None => clean.clone(),
    };
    if clean.len() != corrupted.len() {
        return Err(PairError::LengthMismatch {
            index,
            clean: tok.token_strs(&clean),
            corrupted: tok.token_strs(&corrupted),
        });
    }
    let answer = |text: &str, what: &'static str| {
        tok.single_token(text).map_err(|source| PairError::Answer {
            index,
            what,
            source,
        })
    };
    check_known(tok, &pair.answer, "answer", index)?;
    check_known(tok, &pair.wrong, "wrong answer", index)?;
    let a = answer(&pair.answer, "answer")?;
    let w = answer(&pair.wrong, "wrong answer")?;
    if pair.corrupted.is_some() && clean == corrupted {
        return Err(PairError::IdenticalPrompts {
            index,
            tokens: tok.token_strs(&clean),
        });
    }
    if a == w {
        return Err(PairError::SameAnswer {
            index,
            token: tok.token_str(a),
        });
    }
    Ok(PreparedPair {
        clean,
        corrupted,
        answer: a,
        wrong: w,
        sets: Default::default(),
    })
}

/// Prepares every pair, requiring one common token length.
pub fn prepare_pairs(
    tok: &Tokenizer,
    pairs: &[PromptPair],
    prepend_bos: Option<bool>,
) -> Result<Vec<PreparedPair>, PairError> {
    if pairs.is_empty() {
        return Err(PairError::NoPairs);
    }
    let prepared = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| prepare_pair(tok, p, prepend_bos, i))
        .collect::<Result<Vec<_>, _>>()?;
    let first = prepared[0].n_pos();
    if let Some((index, p)) = prepared
        .iter()
        .enumerate()
        .find(|(_, p)| p.n_pos() != first)
    {
        return Err(PairError::PairsDiffer {
            first,
            index,
            other: p.n_pos(),
        });
    }
    Ok(prepared)
}

/// Prepares every pair, leaving their lengths free: the engine decides
/// whether the target and the position labels let lengths differ.
pub fn prepare_each(
    tok: &Tokenizer,
    pairs: &[PromptPair],
    prepend_bos: Option<bool>,
) -> Result<Vec<PreparedPair>, PairError> {
    if pairs.is_empty() {
        return Err(PairError::NoPairs);
    }
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| prepare_pair(tok, p, prepend_bos, i))
        .collect()
}
