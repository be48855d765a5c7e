//! Metric seeds and gradient groups for the gradient estimates (EAP,
//! EAP-IG, AtP*): each differentiable metric's gradient with respect to
//! the logits (the registry's `MetricDef::grad`), and which backward
//! passes serve which metrics.

use candle_core::{DType, Result as CResult, Tensor};

use crate::patching::metrics::{self, RunView, REGISTRY};
use crate::patching::runs::RunPair;

use super::grads::ReceiverVars;

/// Where each metric's receiver gradients come from: gradient group
/// `group` (one set of raw gradients) times `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FromGroup {
    pub group: usize,
    pub scale: f32,
}

/// The receivers' raw gradients (as [`ReceiverVars::take`] gives them)
/// of each distinct metric gradient, and where each metric's come from:
/// one backward per distinct seed (metrics whose seeds are equal, e.g.
/// `multi_logit_diff` without answer lists and `logit_diff`, share one),
/// all on the one forward graph. `prob`'s seed is each row's answer
/// probability times `logprob`'s (`∂p = p · ∂log p`) and a backward is
/// linear in its seed, so `prob` takes no backward of its own: with one
/// row it reads `logprob`'s group scaled by `p` (a scalar, applied to the
/// scores), with several its own group, `logprob`'s raw gradients scaled
/// row by row (the rows are averaged later).
pub(crate) fn gradient_groups(
    logits: &Tensor,
    run: &RunPair,
    ids: &[usize],
    vars: &ReceiverVars,
) -> CResult<(Vec<Vec<Tensor>>, Vec<FromGroup>)> {
    let dev = logits.device();
    let rows = logits.dim(0)?;
    let seeds = seed_rows(logits, run, ids)?;
    let mut raw: Vec<Vec<Tensor>> = Vec::new();
    let mut from: Vec<FromGroup> = Vec::new();
    for (k, source) in sources(&seeds, ids).into_iter().enumerate() {
        let f = match source {
            Source::Same(j) => from[j],
            Source::ProbOf(j) if rows == 1 => FromGroup {
                group: from[j].group,
                scale: answer_probs(logits, run)?[0] * from[j].scale,
            },
            Source::ProbOf(j) => {
                let p = Tensor::from_vec(answer_probs(logits, run)?, rows, dev)?;
                let g = raw[from[j].group]
                    .iter()
                    .map(|g| {
                        let mut shape = vec![1; g.rank()];
                        shape[0] = rows;
                        g.broadcast_mul(&p.reshape(shape)?)
                    })
                    .collect::<CResult<Vec<_>>>()?;
                raw.push(g);
                FromGroup {
                    group: raw.len() - 1,
                    scale: from[j].scale,
                }
            }
            Source::Own => {
                let seed = Tensor::from_slice(&seeds[k], logits.shape(), dev)?;
                let grads = (logits * seed)?.sum_all()?.backward()?;
                raw.push(vars.take(&grads)?);
                FromGroup {
                    group: raw.len() - 1,
                    scale: 1.0,
                }
            }
        };
        from.push(f);
    }
    Ok((raw, from))
}

/// Where metric `k`'s gradients come from, given every metric's seed.
enum Source {
    /// An earlier metric with an equal seed (`Same(j)`, `j < k`).
    Same(usize),
    /// `prob`: `logprob`'s (metric `j`) scaled by the answer probability.
    ProbOf(usize),
    /// A backward of its own.
    Own,
}

fn sources(seeds: &[Vec<f32>], ids: &[usize]) -> Vec<Source> {
    let named = |n: &str| ids.iter().position(|&i| REGISTRY[i].name == n);
    let (logprob, prob) = (named("logprob"), named("prob"));
    (0..seeds.len())
        .map(|k| {
            if let Some(j) = (0..k).find(|&j| seeds[j] == seeds[k]) {
                Source::Same(j)
            } else if let Some(j) = logprob.filter(|&j| Some(k) == prob && j < k) {
                Source::ProbOf(j)
            } else {
                Source::Own
            }
        })
        .collect()
}

/// Each row's probability of the answer.
fn answer_probs(logits: &Tensor, run: &RunPair) -> CResult<Vec<f32>> {
    let lp: Vec<Vec<f32>> = metrics::log_softmax(logits)?.to_vec2()?;
    Ok(lp.iter().map(|r| r[run.answer as usize].exp()).collect())
}

/// The distinct metric seeds of one row's logits `[1, d_vocab]`, and where
/// each metric's gradients come from: the rule of [`gradient_groups`]
/// (equal seeds share a group; `prob` is `logprob`'s group times `p`)
/// without running the backward passes, for a batch whose rows all
/// compute that same forward (AtP*'s GradDrop rows): row `j` of each
/// block of rows is seeded with group `j`.
pub(crate) fn seed_groups(
    logits: &Tensor,
    run: &RunPair,
    ids: &[usize],
) -> CResult<(Vec<Vec<f32>>, Vec<FromGroup>)> {
    assert_eq!(logits.dim(0)?, 1, "one row's logits");
    let seeds = seed_rows(logits, run, ids)?;
    let mut distinct: Vec<Vec<f32>> = Vec::new();
    let mut from: Vec<FromGroup> = Vec::new();
    for (k, source) in sources(&seeds, ids).into_iter().enumerate() {
        let f = match source {
            Source::Same(j) => from[j],
            Source::ProbOf(j) => FromGroup {
                group: from[j].group,
                scale: answer_probs(logits, run)?[0] * from[j].scale,
            },
            Source::Own => {
                distinct.push(seeds[k].clone());
                FromGroup {
                    group: distinct.len() - 1,
                    scale: 1.0,
                }
            }
        };
        from.push(f);
    }
    Ok((distinct, from))
}

/// Per metric `ids[k]`, its gradient with respect to each row's logits,
/// flat `[rows · d_vocab]`.
fn seed_rows(logits: &Tensor, run: &RunPair, ids: &[usize]) -> CResult<Vec<Vec<f32>>> {
    let rows = logits.dim(0)?;
    ids.iter()
        .map(|&mi| {
            let seed = metric_seeds_by(logits, run, |_| mi)?;
            debug_assert_eq!(seed.dim(0)?, rows);
            seed.flatten_all()?.to_vec1::<f32>()
        })
        .collect()
}

/// `[rows, d_vocab]`: row `r` holds metric `metric_of(r)`'s gradient (a
/// registry index) with respect to that row's logits.
pub(crate) fn metric_seeds_by(
    logits: &Tensor,
    run: &RunPair,
    metric_of: impl Fn(usize) -> usize,
) -> CResult<Tensor> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let lps: Vec<Vec<f32>> = metrics::log_softmax(logits)?.to_vec2()?;
    let clean_lp: Vec<f32> = run.clean_logprobs.to_dtype(DType::F32)?.to_vec1()?;
    let clean_p: Vec<f32> = clean_lp.iter().map(|x| x.exp()).collect();
    let vocab = rows[0].len();
    let mut seed = vec![0f32; rows.len() * vocab];
    for (r, (row, lp)) in rows.iter().zip(&lps).enumerate() {
        let view = RunView {
            logits: row,
            logprobs: lp,
            clean_logprobs: &clean_lp,
            clean_probs: &clean_p,
            answer: run.answer as usize,
            wrong: run.wrong as usize,
            sets: &run.sets,
        };
        let grad = REGISTRY[metric_of(r)].grad.expect("a gradient metric");
        grad(&view, &mut seed[r * vocab..(r + 1) * vocab]);
    }
    Tensor::from_vec(seed, (rows.len(), vocab), logits.device())
}

#[cfg(test)]
mod tests {
    //! `prob`'s gradients scaled from `logprob`'s equal a backward of its
    //! own seed, row by row (rows at different points, as EAP-IG's steps).
    use candle_core::{Device, Tensor};

    use super::{gradient_groups, metric_seeds_by, ReceiverVars};
    use crate::circuits::eap::grad_metrics;
    use crate::circuits::runs;
    use crate::model::{ForwardOptions, HookSpec};
    use crate::patching::metrics::{id, REGISTRY};

    #[test]
    fn prob_gradients_are_logprob_gradients_scaled_per_row() {
        let (m, g, runs) = runs::test_runs("gpt2-tiny", (&[3, 17, 9, 250, 4], &[3, 17, 9, 251, 4]));
        let run = &runs.runs[0];
        let all = Tensor::new(&[[3u32, 17, 9, 250, 4], [5, 1, 9, 60, 2]], &Device::Cpu).unwrap();
        let ids = grad_metrics();
        let k = ids.iter().position(|&i| i == id("prob").0).unwrap();
        let lp = ids.iter().position(|&i| i == id("logprob").0).unwrap();
        for rows in [1, 2] {
            let tokens = all.narrow(0, 0, rows).unwrap();
            let (spec, vars) = ReceiverVars::attach(&m, &g, HookSpec::new(), rows, 5).unwrap();
            let opts = ForwardOptions {
                last_pos_only: true,
                ..Default::default()
            };
            let logits = m
                .forward(Some(&tokens), &spec, &opts)
                .unwrap()
                .logits
                .unwrap();
            let (raw, from) = gradient_groups(&logits, run, &ids, &vars).unwrap();
            // One row: logprob's group times p; two: a group of its own,
            // scaled row by row.
            assert_eq!(from[k].group == from[lp].group, rows == 1);
            // Fewer backward passes than metrics with a gradient.
            assert!(raw.len() < ids.len(), "{} groups", raw.len());
            let seed = metric_seeds_by(&logits, run, |_| id("prob").0).unwrap();
            let grads = (&logits * seed)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let want = vars.take(&grads).unwrap();
            for (v, (a, b)) in raw[from[k].group].iter().zip(&want).enumerate() {
                let a = (a * from[k].scale as f64).unwrap();
                let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                let err: f32 = (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert!(scale > 0.0, "{rows} rows: variable {v} has no gradient");
                assert!(
                    err <= 1e-4 * scale,
                    "{rows} rows: variable {v} off by {err} (scale {scale})"
                );
            }
        }
        assert_eq!(REGISTRY[ids[k]].name, "prob");
    }
}
