//! Behaviour of a demo model on held-out prompts: the numbers the tests
//! hold it to and `train-demo` prints.
//!
//! - IOI: prompts whose name pair never occurs in training
//!   ([`corpus::is_held_out_pair`]); correct when the indirect object is the
//!   top token over the whole vocabulary.
//! - facts: every country of the table under every fact template; correct
//!   when its capital is the top token.
//! - induction: fresh random spans repeated once; every token of the second
//!   copy after its first is scored (the first cannot be predicted), correct
//!   when it is the top prediction. `filler` random words, split at random
//!   between before the span and between the copies, put the copies at
//!   other distances: 0 repeats the span at once, from position 0. A model
//!   that attends a fixed distance back instead of doing induction passes at
//!   0 and fails with filler (the demo model once did, see `README.md`).

use candle_core::{Tensor, D};

use super::corpus::{self, fact_prompt};
use super::rng::Rng;
use super::vocab::{CAPITALS, FACT_TEMPLATES};
use super::{DemoError, Stage};
use crate::model::{ForwardOptions, HookSpec, Tokenizer, Transformer};

/// Accuracies in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    pub ioi: f32,
    pub facts: f32,
    /// Spans repeated at once, from position 0.
    pub induction: f32,
    /// Spans with [`MOVED_FILLER`] random words before and between the copies.
    pub induction_moved: f32,
}

/// Random words before and between the copies in [`Behaviour::induction_moved`].
pub const MOVED_FILLER: usize = 6;

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IOI {:.1}%  facts {:.1}%  induction {:.1}% (moved {:.1}%)",
            self.ioi * 100.0,
            self.facts * 100.0,
            self.induction * 100.0,
            self.induction_moved * 100.0
        )
    }
}

/// Span length of the induction evaluation.
pub const INDUCTION_EVAL_SPAN: usize = 8;

/// Argmax token at every position of each row.
///
/// # Shapes
/// `rows`: equal-length token rows -> `[rows][pos]`
pub fn top_tokens(model: &Transformer, rows: &[Vec<u32>]) -> Result<Vec<Vec<u32>>, DemoError> {
    let (n, t) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<u32> = rows.concat();
    let tokens = Tensor::from_vec(flat, (n, t), model.device()).during("building a batch")?;
    let out = model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .during("an evaluation forward pass")?;
    let logits = out.logits.expect("a full forward pass returns logits");
    logits
        .argmax(D::Minus1)
        .and_then(|a| a.to_vec2::<u32>())
        .during("reading predictions")
}

fn last_top(model: &Transformer, ids: &[u32]) -> Result<u32, DemoError> {
    let top = top_tokens(model, &[ids.to_vec()])?;
    Ok(*top[0].last().expect("prompts are not empty"))
}

/// IOI accuracy over `n` held-out prompts drawn with `seed`.
pub fn ioi_accuracy(
    model: &Transformer,
    tok: &Tokenizer,
    n: usize,
    seed: u64,
) -> Result<f32, DemoError> {
    let mut rng = Rng::fork(seed, "eval-ioi");
    let mut right = 0;
    for _ in 0..n {
        let p = corpus::ioi_prompt(&mut rng, true);
        let ids = tok.encode(&p.prompt(), Some(false))?;
        if last_top(model, &ids)? == tok.single_token(p.io)? {
            right += 1;
        }
    }
    Ok(right as f32 / n as f32)
}

/// Fact accuracy over the whole table and every template.
pub fn fact_accuracy(model: &Transformer, tok: &Tokenizer) -> Result<f32, DemoError> {
    let mut right = 0;
    for t in 0..FACT_TEMPLATES.len() {
        for (country, capital) in CAPITALS {
            let ids = tok.encode(&fact_prompt(t, country), Some(false))?;
            if last_top(model, &ids)? == tok.single_token(capital)? {
                right += 1;
            }
        }
    }
    Ok(right as f32 / (CAPITALS.len() * FACT_TEMPLATES.len()) as f32)
}

/// Induction accuracy over `n` fresh repeated spans of [`INDUCTION_EVAL_SPAN`]
/// words with `filler` random words before and between the copies.
pub fn induction_accuracy(
    model: &Transformer,
    tok: &Tokenizer,
    n: usize,
    seed: u64,
    filler: usize,
) -> Result<f32, DemoError> {
    let mut rng = Rng::fork(seed, "eval-induction");
    let span = INDUCTION_EVAL_SPAN;
    let rows = (0..n)
        .map(|_| {
            let prefix = rng.below(filler + 1);
            let words = corpus::induction_sequence(&mut rng, prefix, span, filler - prefix);
            tok.encode(&words.join(" "), Some(false))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let top = top_tokens(model, &rows)?;
    let mut right = 0;
    let copy = filler + span;
    for (row, pred) in rows.iter().zip(&top) {
        // The prediction at position p is for token p + 1: score the second
        // copy's tokens after its first.
        for p in copy..copy + span - 1 {
            if pred[p] == row[p + 1] {
                right += 1;
            }
        }
    }
    Ok(right as f32 / (n * (span - 1)) as f32)
}

/// All three accuracies (IOI over 200 prompts, induction over 100 spans
/// repeated at once and 100 with [`MOVED_FILLER`] random words).
pub fn behaviour(model: &Transformer, tok: &Tokenizer, seed: u64) -> Result<Behaviour, DemoError> {
    Ok(Behaviour {
        ioi: ioi_accuracy(model, tok, 200, seed)?,
        facts: fact_accuracy(model, tok)?,
        induction: induction_accuracy(model, tok, 100, seed, 0)?,
        induction_moved: induction_accuracy(model, tok, 100, seed, MOVED_FILLER)?,
    })
}
