//! Metrics, all computed at once from a patched run's last-position logits.
//!
//! Every patched run yields every metric, so the UI can switch between them
//! without re-running. `logit_diff_normalized` needs the two baselines and is
//! derived after the raw values are known.

use candle_core::{DType, Result as CResult, Tensor, D};
use serde::{Deserialize, Serialize};

/// Metric names, in the order they are stored and shown.
pub const METRICS: &[&str] = &[
    "logit_diff",
    "logit_diff_normalized",
    "logprob",
    "prob",
    "kl",
    "rank",
];

/// One-line descriptions, parallel to [`METRICS`].
pub const METRIC_ABOUT: &[&str] = &[
    "logit(answer) - logit(wrong) at the last position",
    "(x - corrupted) / (clean - corrupted): 0 = corrupted, 1 = clean",
    "log-probability of the answer",
    "probability of the answer",
    "KL(clean || patched) over the vocabulary",
    "rank of the answer (1 = most likely)",
];

/// Raw metrics of one run (normalised logit diff filled in later).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub logit_diff: f32,
    pub logit_diff_normalized: f32,
    pub logprob: f32,
    pub prob: f32,
    pub kl: f32,
    pub rank: f32,
}

impl Metrics {
    pub fn get(&self, name: &str) -> Option<f32> {
        Some(match name {
            "logit_diff" => self.logit_diff,
            "logit_diff_normalized" => self.logit_diff_normalized,
            "logprob" => self.logprob,
            "prob" => self.prob,
            "kl" => self.kl,
            "rank" => self.rank,
            _ => return None,
        })
    }

    pub fn values(&self) -> [f32; 6] {
        [
            self.logit_diff,
            self.logit_diff_normalized,
            self.logprob,
            self.prob,
            self.kl,
            self.rank,
        ]
    }

    pub fn from_values(v: [f32; 6]) -> Self {
        Metrics {
            logit_diff: v[0],
            logit_diff_normalized: v[1],
            logprob: v[2],
            prob: v[3],
            kl: v[4],
            rank: v[5],
        }
    }

    /// Element-wise mean.
    pub fn mean(items: &[Metrics]) -> Metrics {
        let n = items.len().max(1) as f32;
        let mut acc = [0f32; 6];
        for m in items {
            for (a, v) in acc.iter_mut().zip(m.values()) {
                *a += v;
            }
        }
        Metrics::from_values(acc.map(|a| a / n))
    }

    /// Fills `logit_diff_normalized` from the baselines' logit diffs.
    pub fn normalize(&mut self, clean: f32, corrupted: f32) {
        self.logit_diff_normalized = normalized(self.logit_diff, clean, corrupted);
    }
}

/// `(x - corrupted) / (clean - corrupted)`; NaN when the baselines agree.
pub fn normalized(x: f32, clean: f32, corrupted: f32) -> f32 {
    let denom = clean - corrupted;
    if denom.abs() < 1e-12 {
        f32::NAN
    } else {
        (x - corrupted) / denom
    }
}

/// Computes metrics for each row of `logits`.
///
/// # Shapes
/// `logits: [batch, d_vocab]`; `clean_logprobs: [d_vocab]` (the clean run's
/// log-softmax, for KL).
pub fn compute(
    logits: &Tensor,
    clean_logprobs: &Tensor,
    answer: u32,
    wrong: u32,
) -> CResult<Vec<Metrics>> {
    let logits = logits.to_dtype(DType::F32)?;
    let logprobs = log_softmax(&logits)?;
    // KL(clean || patched) = sum p_clean (log p_clean - log p_patched)
    let p_clean = clean_logprobs.exp()?;
    let kl = logprobs
        .broadcast_sub(clean_logprobs)?
        .neg()?
        .broadcast_mul(&p_clean)?
        .sum(D::Minus1)?
        .to_vec1::<f32>()?;
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let lps: Vec<Vec<f32>> = logprobs.to_vec2()?;
    Ok(rows
        .iter()
        .zip(&lps)
        .zip(kl)
        .map(|((row, lp), kl)| {
            let a = row[answer as usize];
            let rank = 1 + row.iter().filter(|&&x| x > a).count();
            let logprob = lp[answer as usize];
            Metrics {
                logit_diff: a - row[wrong as usize],
                logit_diff_normalized: f32::NAN,
                logprob,
                prob: logprob.exp(),
                kl: kl.max(0.0),
                rank: rank as f32,
            }
        })
        .collect())
}

/// Log-softmax over the last (vocabulary) axis.
pub fn log_softmax(logits: &Tensor) -> CResult<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)?;
    logits.broadcast_sub(&lse)
}
