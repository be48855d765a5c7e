//! The unpatched forwards of the reference: for every prompt pair, the clean
//! run, the corrupted run(s) the spec asks for, and for each run to be
//! patched its tokens, its embedding edit and the activations patched in.
//!
//! Every cache comes from a plain full forward that captures every hook, so
//! a hook the model does not have is simply absent (and refused upstream).

use std::collections::HashMap;

use candle_core::{DType, Device, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::model::{ActivationCache, Edit, ForwardOptions, HookPoint, HookSpec, Transformer};

use super::super::metrics::{self, Metrics};
use super::super::prepare::PreparedPair;
use super::super::spec::{Corruption, Direction, SweepSpec};
use super::cells::pos_axis;
use super::ReferenceError;

/// One run to patch: a forward of `tokens` (with `embed` applied to the
/// token embeddings) whose cells are replaced from `source`.
pub struct PatchedRun {
    pub tokens: Vec<u32>,
    pub embed: Option<Edit>,
    pub source: Source,
}

/// Where patched values come from.
pub enum Source {
    /// Another run's activations (the clean, corrupted or noised run).
    Run(ActivationCache),
    /// Ablation values shared by every pair (filled after all clean runs).
    Ablation,
}

/// A prompt pair's runs: one patched run, or one per noise sample, whose
/// metrics are averaged.
pub struct PairRuns {
    pub runs: Vec<PatchedRun>,
    pub clean_logprobs: Tensor,
    pub answer: u32,
    pub wrong: u32,
    pub sets: metrics::AnswerSets,
    pub clean: Metrics,
    /// Mean over noise samples for Gaussian noise.
    pub corrupted: Metrics,
    pub clean_cache: ActivationCache,
}

/// A plain full forward capturing every hook: the cache and the last
/// position's logits `[1, d_vocab]`.
pub fn plain(
    model: &Transformer,
    tokens: &[u32],
    embed: Option<&Edit>,
) -> CResult<(ActivationCache, Tensor)> {
    let mut spec = HookSpec::new().capture_all();
    if let Some(e) = embed {
        spec = spec.intervene(HookPoint::Embed, e.clone());
    }
    let out = model.forward(
        Some(&tokens_tensor(model, tokens)?),
        &spec,
        &ForwardOptions::default(),
    )?;
    Ok((out.cache, last_logits(out.logits, tokens.len())?))
}

pub fn tokens_tensor(model: &Transformer, tokens: &[u32]) -> CResult<Tensor> {
    Tensor::new(tokens, model.device())?.unsqueeze(0)
}

/// `[1, T, d_vocab]` logits to the last position's `[1, d_vocab]`.
pub fn last_logits(logits: Option<Tensor>, n_pos: usize) -> CResult<Tensor> {
    let logits =
        logits.ok_or_else(|| candle_core::Error::Msg("a full forward has logits".into()))?;
    logits.narrow(1, n_pos - 1, 1)?.squeeze(1)
}

fn score(logits: &Tensor, clean_lp: &Tensor, p: &PreparedPair) -> CResult<Metrics> {
    Ok(metrics::compute_with(logits, clean_lp, p.answer, p.wrong, &p.sets)?[0])
}

/// Builds the runs of every pair; `passes` counts the forwards.
pub fn pair_runs(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
    passes: &mut usize,
) -> Result<Vec<PairRuns>, ReferenceError> {
    let mut out = Vec::new();
    for (index, p) in pairs.iter().enumerate() {
        let (clean_cache, clean_logits) = plain(model, &p.clean, None)?;
        *passes += 1;
        let clean_lp = metrics::log_softmax(&clean_logits)?.squeeze(0)?;
        let clean = score(&clean_logits, &clean_lp, p)?;
        let mut runs = Vec::new();
        let corrupted = match &spec.corruption {
            Corruption::Prompt => {
                let (corr_cache, corr_logits) = plain(model, &p.corrupted, None)?;
                *passes += 1;
                runs.push(match spec.direction {
                    Direction::Denoise => PatchedRun {
                        tokens: p.corrupted.clone(),
                        embed: None,
                        source: Source::Run(clean_cache.clone()),
                    },
                    Direction::Noise => PatchedRun {
                        tokens: p.clean.clone(),
                        embed: None,
                        source: Source::Run(corr_cache),
                    },
                });
                score(&corr_logits, &clean_lp, p)?
            }
            Corruption::Gaussian {
                positions,
                scale,
                samples,
                seed,
            } => {
                let positions = corrupted_positions(positions, p)?;
                let scale = match scale {
                    Some(s) => *s,
                    None => 3.0 * embedding_std(&model.w_e)?,
                };
                let d_model = model.cfg.d_model;
                let mut noised = Vec::new();
                for s in 0..*samples {
                    let noise = gaussian(p.n_pos(), d_model, &positions, scale, *seed, index, s)?;
                    let edit = Edit::Add(noise.to_device(model.device())?);
                    let (cache, logits) = plain(model, &p.clean, Some(&edit))?;
                    *passes += 1;
                    noised.push(score(&logits, &clean_lp, p)?);
                    runs.push(match spec.direction {
                        Direction::Denoise => PatchedRun {
                            tokens: p.clean.clone(),
                            embed: Some(edit),
                            source: Source::Run(clean_cache.clone()),
                        },
                        Direction::Noise => PatchedRun {
                            tokens: p.clean.clone(),
                            embed: None,
                            source: Source::Run(cache),
                        },
                    });
                }
                Metrics::mean(&noised)
            }
            Corruption::Zero { positions } | Corruption::Mean { positions } => {
                if spec.direction == Direction::Denoise {
                    return Err(ReferenceError::AblationDenoises(spec.corruption.name()));
                }
                let positions = corrupted_positions(positions, p)?;
                let edit = ablated_embeddings(model, &spec.corruption, p.n_pos(), &positions)?;
                let (_, logits) = plain(model, &p.clean, Some(&edit))?;
                *passes += 1;
                runs.push(PatchedRun {
                    tokens: p.clean.clone(),
                    embed: None,
                    source: Source::Ablation,
                });
                score(&logits, &clean_lp, p)?
            }
        };
        out.push(PairRuns {
            runs,
            clean_logprobs: clean_lp,
            answer: p.answer,
            wrong: p.wrong,
            sets: p.sets.clone(),
            clean,
            corrupted,
            clean_cache,
        });
    }
    Ok(out)
}

/// The positions a noise or ablation corruption touches: the given ones, or
/// where the clean and corrupted prompts differ.
fn corrupted_positions(given: &[usize], p: &PreparedPair) -> Result<Vec<usize>, ReferenceError> {
    let positions: Vec<usize> = if given.is_empty() {
        (0..p.n_pos())
            .filter(|&i| p.clean[i] != p.corrupted[i])
            .collect()
    } else {
        given.to_vec()
    };
    if positions.is_empty() {
        return Err(ReferenceError::NoPositions);
    }
    if let Some(&bad) = positions.iter().find(|&&q| q >= p.n_pos()) {
        return Err(ReferenceError::PositionOutside {
            pos: bad,
            n_pos: p.n_pos(),
        });
    }
    Ok(positions)
}

/// Population standard deviation of every element of the embedding matrix
/// (ROME's noise scale is three of these), accumulated in f64.
fn embedding_std(w_e: &Tensor) -> CResult<f32> {
    let v: Vec<f32> = w_e.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    Ok(var.sqrt() as f32)
}

/// The noise of one (pair, sample): `[1, n_pos, d_model]`, zero except at
/// `positions`, where each position in the given order draws `d_model`
/// standard normals times `scale` from a `StdRng` seeded with
/// `seed * 0x9E3779B97F4A7C15 + (pair << 32) + sample` (wrapping). This is
/// the seeding sessions promise: the same seed gives the same noise.
fn gaussian(
    n_pos: usize,
    d_model: usize,
    positions: &[usize],
    scale: f32,
    seed: u64,
    pair: usize,
    sample: usize,
) -> CResult<Tensor> {
    let stream = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((pair as u64) << 32)
        .wrapping_add(sample as u64);
    let mut rng = StdRng::seed_from_u64(stream);
    let mut rows = vec![vec![0f32; d_model]; n_pos];
    for &p in positions {
        for x in rows[p].iter_mut() {
            *x = scale * rng.sample::<f32, _>(StandardNormal);
        }
    }
    Tensor::from_vec(rows.concat(), (1, n_pos, d_model), &Device::Cpu)
}

/// The ablation baseline's embedding edit: zero, or the mean token embedding
/// (mean over the vocabulary), at `positions`.
fn ablated_embeddings(
    model: &Transformer,
    corruption: &Corruption,
    n_pos: usize,
    positions: &[usize],
) -> CResult<Edit> {
    let d_model = model.cfg.d_model;
    let row = match corruption {
        Corruption::Mean { .. } => model.w_e.to_dtype(DType::F32)?.mean(0)?,
        _ => Tensor::zeros(d_model, DType::F32, model.device())?,
    };
    let mask: Vec<f32> = (0..n_pos)
        .map(|i| if positions.contains(&i) { 1.0 } else { 0.0 })
        .collect();
    Ok(Edit::Replace {
        mask: Tensor::from_vec(mask, (1, n_pos, 1), model.device())?,
        value: row.reshape((1, 1, d_model))?,
    })
}

/// Ablation values for `hooks`: zeros, or each clean activation's mean over
/// its position axis, averaged over the pairs, at every position.
pub fn ablation_values(
    pairs: &[PairRuns],
    hooks: &[HookPoint],
    mean: bool,
) -> CResult<HashMap<HookPoint, Tensor>> {
    let mut out = HashMap::new();
    for &hook in hooks {
        let acts: Vec<&Tensor> = pairs
            .iter()
            .filter_map(|p| p.clean_cache.get(hook))
            .collect();
        let Some(first) = acts.first() else { continue };
        let value = if mean {
            let axis = pos_axis(hook);
            let mut sum = first.zeros_like()?.mean_keepdim(axis)?;
            for a in &acts {
                sum = (sum + a.mean_keepdim(axis)?)?;
            }
            (sum / acts.len() as f64)?
                .broadcast_as(first.shape())?
                .contiguous()?
        } else {
            first.zeros_like()?
        };
        out.insert(hook, value);
    }
    Ok(out)
}
