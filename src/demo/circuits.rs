//! The demo tasks as patching experiments: prompt pairs for the sweeps, and
//! attention-pattern scores for induction.
//!
//! These are the inputs of the investigations written up in `README.md` and
//! pinned by `tests/demo.rs`; the sweeps themselves are patchbench's own
//! (`patching::run_sweep`), run by the caller.
//!
//! - IOI pairs: a held-out prompt and the same prompt with the *other* name
//!   repeated, so exactly one token (the second mention) differs and the
//!   answer and wrong answer swap.
//! - fact pairs: the same template with another country, answers the two
//!   capitals.
//! - induction: attention from each position of the second copy of a span
//!   to the token after that position's first occurrence (the induction
//!   score), and to the previous position (the previous-token score).

use candle_core::Tensor;

use super::corpus::{self, fact_prompt};
use super::eval::INDUCTION_EVAL_SPAN;
use super::rng::Rng;
use super::vocab::CAPITALS;
use super::{DemoError, Stage};
use crate::model::{ForwardOptions, HookPoint, HookSpec, Tokenizer, Transformer};
use crate::patching::PromptPair;

/// `n` held-out IOI pairs of one template (so all have the same length).
pub fn ioi_pairs(template: usize, n: usize, seed: u64) -> Vec<PromptPair> {
    let mut rng = Rng::fork(seed, "circuits-ioi");
    let mut pairs = Vec::with_capacity(n);
    while pairs.len() < n {
        let p = corpus::ioi_prompt(&mut rng, true);
        if p.template != template {
            continue;
        }
        pairs.push(PromptPair {
            clean: p.prompt(),
            corrupted: Some(p.corrupted()),
            answer: p.io.to_string(),
            wrong: p.s.to_string(),
        });
    }
    pairs
}

/// One pair per country of the table: its fact prompt against the next
/// country's.
pub fn fact_pairs(template: usize) -> Vec<PromptPair> {
    (0..CAPITALS.len())
        .map(|i| {
            let (c, k) = CAPITALS[i];
            let (c2, k2) = CAPITALS[(i + 1) % CAPITALS.len()];
            PromptPair {
                clean: fact_prompt(template, c),
                corrupted: Some(fact_prompt(template, c2)),
                answer: k.to_string(),
                wrong: k2.to_string(),
            }
        })
        .collect()
}

/// Random words before the span in induction circuit experiments.
pub const INDUCTION_PREFIX: usize = 3;
/// Random words between the copies in induction circuit experiments.
pub const INDUCTION_GAP: usize = 3;

/// Induction patching pairs: [`INDUCTION_PREFIX`] random words, a span of
/// `span` words, [`INDUCTION_GAP`] random words, then the span's first
/// `j + 1` words again, so the answer is the span's word `j + 1`. The
/// corrupted prompt replaces that word in the first copy by another one,
/// which becomes the answer. The changed position is `INDUCTION_PREFIX + j + 1`.
pub fn induction_pairs(span: usize, j: usize, n: usize, seed: u64) -> Vec<PromptPair> {
    induction_pairs_changing(span, j, j + 1, n, seed)
}

/// Like [`induction_pairs`], but the corrupted prompt replaces the span's
/// word `j` in the first copy: the word the prompt ends on no longer occurs
/// before, so the token after it is no longer marked as "comes after the
/// current word". The answer stays the span's word `j + 1`; `wrong` is the
/// replacement word. The changed position is `INDUCTION_PREFIX + j`.
pub fn induction_key_pairs(span: usize, j: usize, n: usize, seed: u64) -> Vec<PromptPair> {
    induction_pairs_changing(span, j, j, n, seed)
}

fn induction_pairs_changing(
    span: usize,
    j: usize,
    changed: usize,
    n: usize,
    seed: u64,
) -> Vec<PromptPair> {
    assert!(j + 1 < span, "the answer must lie inside the span");
    let (prefix, gap) = (INDUCTION_PREFIX, INDUCTION_GAP);
    let mut rng = Rng::fork(seed, "circuits-induction-pairs");
    let pool = super::vocab::induction_pool();
    (0..n)
        .map(|_| {
            let idx = rng.distinct(pool.len(), prefix + span + gap + 1);
            let words: Vec<&str> = idx.iter().map(|&i| pool[i]).collect();
            let (head, first, between, swap) = (
                &words[..prefix],
                &words[prefix..prefix + span],
                &words[prefix + span..prefix + span + gap],
                words[prefix + span + gap],
            );
            let mut corrupted_first = first.to_vec();
            corrupted_first[changed] = swap;
            let render = |copy: &[&str]| {
                head.iter()
                    .chain(copy)
                    .chain(between)
                    .chain(&first[..=j])
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            PromptPair {
                clean: render(first),
                corrupted: Some(render(&corrupted_first)),
                answer: first[j + 1].to_string(),
                wrong: swap.to_string(),
            }
        })
        .collect()
}

/// A per-head score, `[layer][head]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadScores {
    pub n_heads: usize,
    pub values: Vec<f32>,
}

impl HeadScores {
    pub fn get(&self, layer: usize, head: usize) -> f32 {
        self.values[layer * self.n_heads + head]
    }

    /// `(layer, head, score)` of the highest score.
    pub fn best(&self) -> (usize, usize, f32) {
        let (i, v) = self
            .values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("scores are not empty");
        (i / self.n_heads, i % self.n_heads, *v)
    }
}

/// Mean attention pattern of every layer over equal-length token rows.
///
/// # Shapes
/// `rows: [n][T]` -> `[layer][head][q_pos][k_pos]`
pub fn mean_patterns(
    model: &Transformer,
    rows: &[Vec<u32>],
) -> Result<Vec<Vec<Vec<Vec<f32>>>>, DemoError> {
    let (n, t) = (rows.len(), rows.first().map_or(0, Vec::len));
    let tokens =
        Tensor::from_vec(rows.concat(), (n, t), model.device()).during("building a batch")?;
    let layers = model.cfg.n_layers;
    let spec = (0..layers).fold(HookSpec::new(), |s, l| s.capture(HookPoint::Pattern(l)));
    let out = model
        .forward(Some(&tokens), &spec, &ForwardOptions::default())
        .during("capturing attention patterns")?;
    (0..layers)
        .map(|l| {
            out.cache
                .get(HookPoint::Pattern(l))
                .expect("the pattern was captured")
                .mean(0)
                .and_then(|m| m.to_vec3::<f32>())
                .during("reading attention patterns")
        })
        .collect()
}

/// Induction and previous-token scores of every head, mean attention
/// weights over `n` fresh repeated spans of [`INDUCTION_EVAL_SPAN`] words
/// laid out as in [`induction_pairs`]: from each position of the second copy
/// to the token after its first occurrence, and from every position to the
/// one before it.
pub fn induction_scores(
    model: &Transformer,
    tok: &Tokenizer,
    n: usize,
    seed: u64,
) -> Result<(HeadScores, HeadScores), DemoError> {
    let (prefix, span, gap) = (INDUCTION_PREFIX, INDUCTION_EVAL_SPAN, INDUCTION_GAP);
    let mut rng = Rng::fork(seed, "circuits-induction");
    let rows = (0..n)
        .map(|_| {
            tok.encode(
                &corpus::induction_sequence(&mut rng, prefix, span, gap).join(" "),
                Some(false),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let t = prefix + 2 * span + gap;
    let (mut induction, mut previous) = (Vec::new(), Vec::new());
    for layer in mean_patterns(model, &rows)? {
        for rows in &layer {
            let ind = (prefix + span + gap..t)
                .map(|q| rows[q][q - span - gap + 1])
                .sum::<f32>()
                / span as f32;
            let prev = (1..t).map(|q| rows[q][q - 1]).sum::<f32>() / (t - 1) as f32;
            induction.push(ind);
            previous.push(prev);
        }
    }
    let n_heads = model.cfg.n_heads;
    Ok((
        HeadScores {
            n_heads,
            values: induction,
        },
        HeadScores {
            n_heads,
            values: previous,
        },
    ))
}
