//! Statistics of a sweep over many prompt pairs, computed from the per-pair
//! values the engine stores, for every metric of the registry.
//!
//! Per cell and metric: mean, standard deviation (n − 1), standard error,
//! a seeded percentile bootstrap interval of the mean (resampling pairs;
//! one set of resamples serves every cell, so cells are comparable and the
//! numbers are the same for the same seed), and the fraction of pairs whose
//! value has the mean's sign.
//!
//! Normalised metrics (the normalised logit difference) exist in two
//! forms. `stats` summarise the **per-pair** values: each pair normalised by
//! its own clean and corrupted baselines. The sweep's `metrics` hold the
//! **TransformerLens** form: the mean raw value normalised by the
//! dataset-mean baselines, `(mean x − mean corrupted) / (mean clean − mean
//! corrupted)`; [`SweepStats::dataset_normalized`] gives that value with
//! its own bootstrap interval (resampling pairs for all three means).
//!
//! Pairs whose clean run does not prefer the answer (clean logit
//! difference ≤ 0) are listed in [`SweepStats::flagged`]: the effect of a
//! patch on a behaviour the model does not show is noise.
//!
//! Statistics are derived data: sessions store the per-pair values, and
//! the statistics are recomputed (deterministically) when shown.

use std::collections::BTreeMap;

use crate::patching::metrics::{normalized, Compute, LOGIT_DIFF, REGISTRY};
use crate::patching::SweepResult;

/// Default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 1000;
/// Upper bound on resamples (`--resamples`).
pub const MAX_RESAMPLES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsOptions {
    pub resamples: usize,
    pub seed: u64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            resamples: DEFAULT_RESAMPLES,
            seed: 0,
        }
    }
}

/// One metric's statistics, one entry per cell (row-major, as `metrics`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub sem: Vec<f32>,
    pub ci_low: Vec<f32>,
    pub ci_high: Vec<f32>,
    /// Fraction of pairs whose value has the sign of the mean.
    pub sign_agreement: Vec<f32>,
}

/// A value with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub value: f32,
    pub low: f32,
    pub high: f32,
}

/// Statistics of a whole sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepStats {
    pub n_pairs: usize,
    pub options: StatsOptions,
    /// Metric name -> per-cell statistics over the per-pair values.
    pub metrics: BTreeMap<String, MetricStats>,
    /// Normalised metric name -> per-cell TransformerLens-style value
    /// (dataset-mean baselines) with its interval.
    pub dataset_normalized: BTreeMap<String, Vec<Interval>>,
    /// Metric name -> the clean and corrupted baselines over pairs.
    pub baselines: BTreeMap<String, (Summary, Summary)>,
    /// Pairs (0-based) whose clean run does not prefer the answer.
    pub flagged: Vec<usize>,
}

/// Summary of one set of per-pair values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub mean: f32,
    pub std: f32,
    pub sem: f32,
    pub ci_low: f32,
    pub ci_high: f32,
    pub sign_agreement: f32,
}

/// A small, fixed generator (SplitMix64), so intervals for a seed never
/// change with a dependency's version.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed ^ 0x5eed_da7a_5e75_0001)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// `resamples` draws of `n` pair indices with replacement.
pub(crate) fn resample_indices(n: usize, opts: &StatsOptions) -> Vec<Vec<u32>> {
    let mut rng = SplitMix::new(opts.seed);
    (0..opts.resamples)
        .map(|_| (0..n).map(|_| rng.below(n) as u32).collect())
        .collect()
}

/// The `q` quantile of sorted values, interpolating linearly (numpy's default).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Summary of `values` (one per pair; NaN = not computed) with the
/// bootstrap resamples `draws`.
pub fn summarize(values: &[f32], draws: &[Vec<u32>]) -> Summary {
    let nan = Summary {
        mean: f32::NAN,
        std: f32::NAN,
        sem: f32::NAN,
        ci_low: f32::NAN,
        ci_high: f32::NAN,
        sign_agreement: f32::NAN,
    };
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return nan;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = if values.len() > 1 {
        values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0)
    } else {
        f64::NAN
    };
    let std = var.sqrt();
    let mut means: Vec<f64> = draws
        .iter()
        .map(|d| d.iter().map(|&i| values[i as usize] as f64).sum::<f64>() / n)
        .collect();
    means.sort_by(f64::total_cmp);
    let agree = values.iter().filter(|&&v| (v as f64) * mean > 0.0).count() as f64 / n;
    Summary {
        mean: mean as f32,
        std: std as f32,
        sem: (std / n.sqrt()) as f32,
        ci_low: quantile(&means, 0.025) as f32,
        ci_high: quantile(&means, 0.975) as f32,
        sign_agreement: if mean == 0.0 { f32::NAN } else { agree as f32 },
    }
}

/// Statistics of every metric of `r`, every cell.
pub fn sweep_stats(r: &SweepResult, opts: &StatsOptions) -> SweepStats {
    let n = r.per_pair.len();
    let draws = resample_indices(n, opts);
    let n_cells = r.n_cells();
    let mut metrics = BTreeMap::new();
    let mut dataset_normalized = BTreeMap::new();
    let mut baselines = BTreeMap::new();
    for (mi, def) in REGISTRY.iter().enumerate() {
        let column = |p: &BTreeMap<String, Vec<f32>>, c: usize| {
            p.get(def.name)
                .and_then(|v| v.get(c))
                .copied()
                .unwrap_or(f32::NAN)
        };
        let mut s = MetricStats::default();
        for c in 0..n_cells {
            let vals: Vec<f32> = r.per_pair.iter().map(|p| column(p, c)).collect();
            let x = summarize(&vals, &draws);
            s.mean.push(x.mean);
            s.std.push(x.std);
            s.sem.push(x.sem);
            s.ci_low.push(x.ci_low);
            s.ci_high.push(x.ci_high);
            s.sign_agreement.push(x.sign_agreement);
        }
        metrics.insert(def.name.to_string(), s);
        let pick = |clean: bool| {
            r.pair_baselines
                .iter()
                .map(|b| (if clean { b.clean } else { b.corrupted }).values()[mi])
                .collect::<Vec<f32>>()
        };
        baselines.insert(
            def.name.to_string(),
            (
                summarize(&pick(true), &draws),
                summarize(&pick(false), &draws),
            ),
        );
        if let Compute::Normalized { of } = def.compute {
            let clean: Vec<f32> = r
                .pair_baselines
                .iter()
                .map(|b| b.clean.get(of).unwrap_or(f32::NAN))
                .collect();
            let corr: Vec<f32> = r
                .pair_baselines
                .iter()
                .map(|b| b.corrupted.get(of).unwrap_or(f32::NAN))
                .collect();
            let cells = (0..n_cells)
                .map(|c| {
                    let xs: Vec<f32> = r
                        .per_pair
                        .iter()
                        .map(|p| {
                            p.get(of)
                                .and_then(|v| v.get(c))
                                .copied()
                                .unwrap_or(f32::NAN)
                        })
                        .collect();
                    dataset_interval(&xs, &clean, &corr, &draws)
                })
                .collect();
            dataset_normalized.insert(def.name.to_string(), cells);
        }
    }
    let flagged = r
        .pair_baselines
        .iter()
        .enumerate()
        .filter(|(_, b)| b.clean[LOGIT_DIFF].is_nan() || b.clean[LOGIT_DIFF] <= 0.0)
        .map(|(i, _)| i)
        .collect();
    SweepStats {
        n_pairs: n,
        options: *opts,
        metrics,
        dataset_normalized,
        baselines,
        flagged,
    }
}

/// `normalized(mean x, mean clean, mean corrupted)` and its bootstrap
/// interval, resampling pairs for all three means together.
fn dataset_interval(x: &[f32], clean: &[f32], corr: &[f32], draws: &[Vec<u32>]) -> Interval {
    let mean = |v: &[f32], idx: Option<&[u32]>| -> f32 {
        match idx {
            Some(d) => {
                (d.iter().map(|&i| v[i as usize] as f64).sum::<f64>() / d.len() as f64) as f32
            }
            None => (v.iter().map(|&a| a as f64).sum::<f64>() / v.len() as f64) as f32,
        }
    };
    let value = normalized(mean(x, None), mean(clean, None), mean(corr, None));
    if x.is_empty() || x.iter().any(|v| !v.is_finite()) {
        return Interval {
            value: f32::NAN,
            low: f32::NAN,
            high: f32::NAN,
        };
    }
    let mut vs: Vec<f64> = draws
        .iter()
        .map(|d| normalized(mean(x, Some(d)), mean(clean, Some(d)), mean(corr, Some(d))) as f64)
        .filter(|v| v.is_finite())
        .collect();
    vs.sort_by(f64::total_cmp);
    Interval {
        value,
        low: quantile(&vs, 0.025) as f32,
        high: quantile(&vs, 0.975) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_computation() {
        let v = [1.0f32, 2.0, 3.0, 6.0];
        let draws = resample_indices(
            4,
            &StatsOptions {
                resamples: 2000,
                seed: 7,
            },
        );
        let s = summarize(&v, &draws);
        assert_eq!(s.mean, 3.0);
        assert!((s.std - (14.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert!((s.sem - s.std / 2.0).abs() < 1e-6);
        assert!(s.ci_low < 3.0 && s.ci_high > 3.0 && s.ci_low >= 1.0 && s.ci_high <= 6.0);
        assert_eq!(s.sign_agreement, 1.0);
        let again = summarize(
            &v,
            &resample_indices(
                4,
                &StatsOptions {
                    resamples: 2000,
                    seed: 7,
                },
            ),
        );
        assert_eq!(s, again);
        let mixed = summarize(&[-1.0, 2.0, 3.0], &draws[..0]);
        assert!((mixed.sign_agreement - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert!((quantile(&s, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile(&s, 0.025) - 1.075).abs() < 1e-12);
    }
}
