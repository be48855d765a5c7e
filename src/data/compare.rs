//! A paired permutation test between two sweeps' per-pair values at one
//! cell (two heads, noising against denoising, two models on one dataset).
//!
//! The statistic is the mean of the paired differences `a_i − b_i`. Under
//! the null hypothesis that the two are exchangeable within each pair,
//! every difference is as likely negated, so the null distribution is that
//! of the mean with random signs; the two-sided p-value is
//! `(1 + #{|mean*| ≥ |mean|}) / (1 + permutations)` (never 0). Seeded, with
//! the same generator as the bootstrap, so a result is reproducible.

use super::stats::{quantile, resample_indices, SplitMix, StatsOptions};

/// Default number of sign permutations.
pub const DEFAULT_PERMUTATIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub n: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean of `a − b`.
    pub diff: f64,
    /// 95% percentile bootstrap interval of `diff`.
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    pub permutations: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    #[error("the two sweeps have {a} and {b} pairs; a paired test needs the same pairs in both — run both sweeps on one dataset")]
    Unpaired { a: usize, b: usize },
    #[error("no per-pair values to compare (a missing cell, or NaN values)")]
    NoValues,
}

/// The paired permutation test of `a` against `b`.
pub fn paired_permutation(
    a: &[f32],
    b: &[f32],
    permutations: usize,
    seed: u64,
) -> Result<Comparison, CompareError> {
    if a.len() != b.len() {
        return Err(CompareError::Unpaired {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.is_empty() || a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(CompareError::NoValues);
    }
    let n = a.len() as f64;
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 - y as f64)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let observed = mean(&d);
    let mut rng = SplitMix::new(seed ^ 0x9e37);
    let tol = 1e-12 * (1.0 + observed.abs());
    let mut extreme = 0usize;
    for _ in 0..permutations {
        let s: f64 = d
            .iter()
            .map(|&x| if rng.next_u64() & 1 == 0 { x } else { -x })
            .sum();
        if (s / n).abs() >= observed.abs() - tol {
            extreme += 1;
        }
    }
    let draws = resample_indices(
        d.len(),
        &StatsOptions {
            resamples: 1000,
            seed,
        },
    );
    let mut boot: Vec<f64> = draws
        .iter()
        .map(|idx| idx.iter().map(|&i| d[i as usize]).sum::<f64>() / n)
        .collect();
    boot.sort_by(f64::total_cmp);
    Ok(Comparison {
        n: a.len(),
        mean_a: a.iter().map(|&x| x as f64).sum::<f64>() / n,
        mean_b: b.iter().map(|&x| x as f64).sum::<f64>() / n,
        diff: observed,
        ci_low: quantile(&boot, 0.025),
        ci_high: quantile(&boot, 0.975),
        p_value: (1 + extreme) as f64 / (1 + permutations) as f64,
        permutations,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sweeps_are_not_different_and_shifted_ones_are() {
        let a: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let same = paired_permutation(&a, &a, 2000, 1).unwrap();
        assert_eq!(same.diff, 0.0);
        assert_eq!(same.p_value, 1.0);
        let b: Vec<f32> = a.iter().map(|x| x - 0.5).collect();
        let shifted = paired_permutation(&a, &b, 2000, 1).unwrap();
        assert!((shifted.diff - 0.5).abs() < 1e-6);
        assert!(shifted.p_value < 0.001, "{shifted:?}");
        assert_eq!(shifted, paired_permutation(&a, &b, 2000, 1).unwrap());
        assert!(matches!(
            paired_permutation(&a, &b[..3], 10, 0),
            Err(CompareError::Unpaired { .. })
        ));
    }
}
