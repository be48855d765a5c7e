//! Position labels: a dataset's per-pair named spans resolved against the
//! tokenised prompts into the engine's [`PositionLabels`].
//!
//! Every pair must name the same labels (a column of the heatmap is one
//! role across all pairs); their order is that of the first pair's
//! positions, so `IO, S1, S2, END` read left to right as in the prompt.

use crate::patching::{PositionLabels, PreparedPair};

use super::dataset::Dataset;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("pair {pair} has no position labels, but pair {first} does — label every pair (the same labels) or none")]
    Unlabelled { pair: String, first: String },
    #[error("pair {pair} lacks the label {label:?} that pair {first} has — every pair must name the same labels")]
    Missing {
        pair: String,
        label: String,
        first: String,
    },
    #[error("pair {pair}: label {label:?} at {span} is outside its {n_tokens} tokens — positions count tokens of the clean prompt from 0 (BOS included when one is prepended); negative ones count from the end")]
    OutOfRange {
        pair: String,
        label: String,
        span: String,
        n_tokens: usize,
    },
}

/// The dataset's labels resolved against its prepared pairs (same order),
/// or `None` when no pair is labelled.
pub fn align(
    ds: &Dataset,
    prepared: &[PreparedPair],
) -> Result<Option<PositionLabels>, LabelError> {
    let Some(fi) = ds.pairs.iter().position(|p| !p.labels.is_empty()) else {
        return Ok(None);
    };
    let first = &ds.pairs[fi];
    let mut spans = Vec::with_capacity(ds.len());
    for (i, (p, prep)) in ds.pairs.iter().zip(prepared).enumerate() {
        if p.labels.is_empty() {
            return Err(LabelError::Unlabelled {
                pair: p.name(i),
                first: first.name(fi),
            });
        }
        let missing = first
            .labels
            .keys()
            .find(|k| !p.labels.contains_key(*k))
            .map(|k| (k, i, fi))
            .or_else(|| {
                p.labels
                    .keys()
                    .find(|k| !first.labels.contains_key(*k))
                    .map(|k| (k, fi, i))
            });
        if let Some((label, lacks, has)) = missing {
            return Err(LabelError::Missing {
                pair: ds.pairs[lacks].name(lacks),
                label: label.clone(),
                first: ds.pairs[has].name(has),
            });
        }
        let n = prep.n_pos();
        let mut row = Vec::with_capacity(p.labels.len());
        for (label, span) in &p.labels {
            let r = span.resolve(n).ok_or_else(|| LabelError::OutOfRange {
                pair: p.name(i),
                label: label.clone(),
                span: span.to_string(),
                n_tokens: n,
            })?;
            row.push(r);
        }
        spans.push(row);
    }
    // Order the labels by where they sit in the first labelled pair.
    let names: Vec<String> = first.labels.keys().cloned().collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&j| (spans[fi][j].start, spans[fi][j].end, j));
    Ok(Some(PositionLabels {
        names: order.iter().map(|&j| names[j].clone()).collect(),
        spans: spans
            .into_iter()
            .map(|row| order.iter().map(|&j| row[j].clone()).collect())
            .collect(),
    }))
}
