//! How a corrupted run is made from a clean prompt without a corrupted
//! prompt: seeded Gaussian noise on the token embeddings at some positions
//! (ROME), or zero / mean ablation, and the patch sources ablation uses.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Result as CResult, Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::model::HookPoint;

use super::error::SweepError;
use super::prepare::PreparedPair;
use super::runs::RunPair;
use super::spec::Corruption;

/// Positions whose embeddings a Gaussian/ablation corruption touches.
pub(crate) fn noise_positions(c: &Corruption, p: &PreparedPair) -> Result<Vec<usize>, SweepError> {
    let given = match c {
        Corruption::Prompt => return Ok(vec![]),
        Corruption::Gaussian { positions, .. }
        | Corruption::Zero { positions }
        | Corruption::Mean { positions } => positions,
    };
    let positions = if given.is_empty() {
        p.differing_positions()
    } else {
        given.clone()
    };
    if positions.is_empty() {
        return Err(SweepError::Invalid(format!(
            "{} corruption needs positions to corrupt: give noise positions (e.g. the subject tokens), \
             or a corrupted prompt that differs from the clean one",
            c.name()
        )));
    }
    if let Some(&bad) = positions.iter().find(|&&q| q >= p.clean.len()) {
        return Err(SweepError::Invalid(format!(
            "noise position {bad} is outside the prompt, which has {} tokens (positions 0..{})",
            p.clean.len(),
            p.clean.len() - 1
        )));
    }
    Ok(positions)
}

/// Zeros, or the mean over positions and pairs of the clean activations.
pub(crate) fn ablation_sources(
    runs: &[RunPair],
    hooks: &HashSet<HookPoint>,
    mean: bool,
) -> CResult<HashMap<HookPoint, Tensor>> {
    let mut out = HashMap::new();
    for h in hooks {
        let acts: Vec<&Tensor> = runs.iter().filter_map(|r| r.base.get(*h)).collect();
        let Some(first) = acts.first() else { continue };
        let v = if mean {
            let pd = h.pos_dim();
            let mut sum = acts[0].mean_keepdim(pd)?;
            for a in &acts[1..] {
                sum = (sum + a.mean_keepdim(pd)?)?;
            }
            let avg = (sum / acts.len() as f64)?;
            avg.broadcast_as(first.shape())?.contiguous()?
        } else {
            first.zeros_like()?
        };
        out.insert(*h, v);
    }
    Ok(out)
}

/// `[1, n_pos, 1]` with ones at `positions`.
pub(crate) fn position_mask(
    n_pos: usize,
    positions: &[usize],
    dev: &candle_core::Device,
) -> CResult<Tensor> {
    let v: Vec<f32> = (0..n_pos)
        .map(|i| if positions.contains(&i) { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (1, n_pos, 1), dev)
}

/// Seeded noise `[1, n_pos, d_model]`, non-zero only at `positions`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gaussian_noise(
    n_pos: usize,
    d_model: usize,
    positions: &[usize],
    scale: f32,
    seed: u64,
    pair: usize,
    sample: usize,
    dev: &candle_core::Device,
) -> CResult<Tensor> {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((pair as u64) << 32)
        .wrapping_add(sample as u64);
    let mut rng = StdRng::seed_from_u64(mix);
    let mut v = vec![0f32; n_pos * d_model];
    for &p in positions {
        for x in &mut v[p * d_model..(p + 1) * d_model] {
            *x = scale * rng.sample::<f32, _>(StandardNormal);
        }
    }
    Tensor::from_vec(v, (1, n_pos, d_model), dev)
}

/// Standard deviation of all elements.
pub(crate) fn tensor_std(t: &Tensor) -> CResult<f32> {
    let t = t.to_dtype(DType::F32)?.flatten_all()?;
    let mean = t.mean_all()?;
    let var = t.broadcast_sub(&mean)?.sqr()?.mean(D::Minus1)?;
    var.sqrt()?.to_scalar::<f32>()
}
