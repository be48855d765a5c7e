//! The unpatched runs a sweep patches between.
//!
//! For every prompt pair (and every noise sample) a [`RunPair`] holds the
//! *base* run that gets patched (corrupted for denoising, clean for noising)
//! and the *source* activations patched in (the other run's, or zeros/means
//! for ablations), plus what the fast path needs to resume the base run
//! mid-network: its `resid_pre` at every layer and its keys/values.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Result as CResult, Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::model::{
    ActivationCache, Edit, ForwardOptions, HookPoint, HookSpec, KvCache, Transformer,
};

use super::metrics::{self, Metrics};
use super::prepare::PreparedPair;
use super::spec::{Corruption, Direction, SweepSpec};

/// One base run and its patch sources.
pub struct RunPair {
    pub pair: usize,
    /// Tokens of the base run.
    pub base_tokens: Vec<u32>,
    /// An edit of the base run's embeddings (noise or ablation), for the naive path.
    pub base_embed_edit: Option<Edit>,
    /// Base activations: `resid_pre` of every layer and the target hooks.
    pub base: ActivationCache,
    pub base_kv: KvCache,
    /// The base run's metrics (the result of a patch that changes nothing).
    pub base_metrics: Metrics,
    /// Activations patched in, by hook, `[1, ...]`.
    pub source: HashMap<HookPoint, Tensor>,
    /// Clean log-probabilities at the last position, for KL.
    pub clean_logprobs: Tensor,
    pub answer: u32,
    pub wrong: u32,
}

/// Baselines of one prompt pair (averaged over noise samples).
#[derive(Debug, Clone, Copy)]
pub struct PairBaselines {
    pub clean: Metrics,
    pub corrupted: Metrics,
}

/// Runs the unpatched forwards for every pair and sample.
///
/// `hooks` are the activation hooks the sweep patches. Returns the run pairs,
/// the per-pair baselines and the number of forward passes spent.
pub fn build_runs(
    model: &Transformer,
    pairs: &[PreparedPair],
    spec: &SweepSpec,
    hooks: &HashSet<HookPoint>,
) -> Result<(Vec<RunPair>, Vec<PairBaselines>, usize), String> {
    let dev = model.device();
    let cfg = &model.cfg;
    let mut capture = HookSpec::new();
    for l in 0..cfg.n_layers {
        capture = capture.capture(HookPoint::ResidPre(l));
    }
    for h in hooks {
        capture = capture.capture(*h);
    }
    let opts = ForwardOptions {
        last_pos_only: true,
        return_kv: true,
        ..Default::default()
    };
    let mut passes = 0;
    let run = |tokens: &[u32],
               edit: Option<&Edit>,
               passes: &mut usize|
     -> CResult<(ActivationCache, KvCache, Tensor)> {
        let t = Tensor::new(tokens, dev)?.unsqueeze(0)?;
        let mut spec = capture.clone();
        if let Some(e) = edit {
            spec = spec.intervene(HookPoint::Embed, e.clone());
        }
        let out = model.forward(Some(&t), &spec, &opts)?;
        *passes += 1;
        Ok((
            out.cache,
            out.kv.expect("kv requested"),
            out.logits.expect("logits").squeeze(0)?,
        ))
    };
    let e = |e: candle_core::Error| e.to_string();
    let mut runs = Vec::new();
    let mut baselines = Vec::new();
    let embed_std = if matches!(spec.corruption, Corruption::Gaussian { scale: None, .. }) {
        Some(tensor_std(&model.w_e).map_err(e)?)
    } else {
        None
    };
    let mean_embed = if matches!(spec.corruption, Corruption::Mean { .. }) {
        Some(
            model
                .w_e
                .to_dtype(DType::F32)
                .map_err(e)?
                .mean(0)
                .map_err(e)?,
        )
    } else {
        None
    };
    for (pi, p) in pairs.iter().enumerate() {
        let (clean_cache, clean_kv, clean_logits) = run(&p.clean, None, &mut passes).map_err(e)?;
        let clean_lp = metrics::log_softmax(&clean_logits).map_err(e)?;
        let score = |logits: &Tensor| -> Result<Metrics, String> {
            Ok(metrics::compute(
                &logits.unsqueeze(0).map_err(e)?,
                &clean_lp,
                p.answer,
                p.wrong,
            )
            .map_err(e)?[0])
        };
        let clean_metrics = score(&clean_logits)?;
        let n_pos = p.clean.len();
        let positions = noise_positions(&spec.corruption, p)?;
        match &spec.corruption {
            Corruption::Prompt => {
                let (corr_cache, corr_kv, corr_logits) =
                    run(&p.corrupted, None, &mut passes).map_err(e)?;
                let corr_metrics = score(&corr_logits)?;
                baselines.push(PairBaselines {
                    clean: clean_metrics,
                    corrupted: corr_metrics,
                });
                let (base, base_kv, base_metrics, base_tokens, src) = match spec.direction {
                    Direction::Denoise => (
                        corr_cache,
                        corr_kv,
                        corr_metrics,
                        p.corrupted.clone(),
                        clean_cache,
                    ),
                    Direction::Noise => (
                        clean_cache,
                        clean_kv,
                        clean_metrics,
                        p.clean.clone(),
                        corr_cache,
                    ),
                };
                runs.push(RunPair {
                    pair: pi,
                    base_tokens,
                    base_embed_edit: None,
                    base,
                    base_kv,
                    base_metrics,
                    source: pick(&src, hooks),
                    clean_logprobs: clean_lp.clone(),
                    answer: p.answer,
                    wrong: p.wrong,
                });
            }
            Corruption::Gaussian {
                scale,
                samples,
                seed,
                ..
            } => {
                let scale = scale.unwrap_or_else(|| 3.0 * embed_std.unwrap_or(1.0));
                let mut corr = Vec::new();
                for s in 0..(*samples).max(1) {
                    let noise =
                        gaussian_noise(n_pos, cfg.d_model, &positions, scale, *seed, pi, s, dev)
                            .map_err(e)?;
                    let edit = Edit::Add(noise);
                    let (nc, nkv, nl) = run(&p.clean, Some(&edit), &mut passes).map_err(e)?;
                    let noised_metrics = score(&nl)?;
                    corr.push(noised_metrics);
                    let rp = match spec.direction {
                        Direction::Denoise => RunPair {
                            pair: pi,
                            base_tokens: p.clean.clone(),
                            base_embed_edit: Some(edit),
                            base: nc,
                            base_kv: nkv,
                            base_metrics: noised_metrics,
                            source: pick(&clean_cache, hooks),
                            clean_logprobs: clean_lp.clone(),
                            answer: p.answer,
                            wrong: p.wrong,
                        },
                        Direction::Noise => RunPair {
                            pair: pi,
                            base_tokens: p.clean.clone(),
                            base_embed_edit: None,
                            base: clean_cache.clone(),
                            base_kv: clean_kv.clone(),
                            base_metrics: clean_metrics,
                            source: pick(&nc, hooks),
                            clean_logprobs: clean_lp.clone(),
                            answer: p.answer,
                            wrong: p.wrong,
                        },
                    };
                    runs.push(rp);
                }
                baselines.push(PairBaselines {
                    clean: clean_metrics,
                    corrupted: Metrics::mean(&corr),
                });
            }
            Corruption::Zero { .. } | Corruption::Mean { .. } => {
                if spec.direction == Direction::Denoise {
                    return Err(format!(
                        "{} ablation replaces activations of the clean run, so it only runs with direction noise",
                        spec.corruption.name()
                    ));
                }
                // Baseline: the clean prompt with the embeddings at `positions` ablated.
                let mask = position_mask(n_pos, &positions, dev).map_err(e)?;
                let value = match &mean_embed {
                    Some(m) => m
                        .to_dtype(model.dtype())
                        .map_err(e)?
                        .reshape((1, 1, cfg.d_model))
                        .map_err(e)?,
                    None => Tensor::zeros((1, 1, cfg.d_model), model.dtype(), dev).map_err(e)?,
                };
                let edit = Edit::Replace { mask, value };
                let (_, _, al) = run(&p.clean, Some(&edit), &mut passes).map_err(e)?;
                baselines.push(PairBaselines {
                    clean: clean_metrics,
                    corrupted: score(&al)?,
                });
                runs.push(RunPair {
                    pair: pi,
                    base_tokens: p.clean.clone(),
                    base_embed_edit: None,
                    base: clean_cache.clone(),
                    base_kv: clean_kv,
                    base_metrics: clean_metrics,
                    source: HashMap::new(), // filled below: means span all pairs
                    clean_logprobs: clean_lp.clone(),
                    answer: p.answer,
                    wrong: p.wrong,
                });
            }
        }
    }
    if spec.corruption.is_ablation() {
        let ablated = ablation_sources(
            &runs,
            hooks,
            matches!(spec.corruption, Corruption::Mean { .. }),
        )
        .map_err(e)?;
        for r in runs.iter_mut() {
            r.source = ablated.clone();
        }
    }
    Ok((runs, baselines, passes))
}

/// Positions whose embeddings a Gaussian/ablation corruption touches.
fn noise_positions(c: &Corruption, p: &PreparedPair) -> Result<Vec<usize>, String> {
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
        return Err(format!(
            "{} corruption needs positions to corrupt: give noise positions (e.g. the subject tokens), \
             or a corrupted prompt that differs from the clean one",
            c.name()
        ));
    }
    if let Some(&bad) = positions.iter().find(|&&q| q >= p.clean.len()) {
        return Err(format!(
            "noise position {bad} is outside the prompt, which has {} tokens (positions 0..{})",
            p.clean.len(),
            p.clean.len() - 1
        ));
    }
    Ok(positions)
}

fn pick(cache: &ActivationCache, hooks: &HashSet<HookPoint>) -> HashMap<HookPoint, Tensor> {
    hooks
        .iter()
        .filter_map(|h| cache.get(*h).map(|t| (*h, t.clone())))
        .collect()
}

/// Zeros, or the mean over positions and pairs of the clean activations.
fn ablation_sources(
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
fn position_mask(n_pos: usize, positions: &[usize], dev: &candle_core::Device) -> CResult<Tensor> {
    let v: Vec<f32> = (0..n_pos)
        .map(|i| if positions.contains(&i) { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (1, n_pos, 1), dev)
}

/// Seeded noise `[1, n_pos, d_model]`, non-zero only at `positions`.
#[allow(clippy::too_many_arguments)]
fn gaussian_noise(
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
fn tensor_std(t: &Tensor) -> CResult<f32> {
    let t = t.to_dtype(DType::F32)?.flatten_all()?;
    let mean = t.mean_all()?;
    let var = t.broadcast_sub(&mean)?.sqr()?.mean(D::Minus1)?;
    var.sqrt()?.to_scalar::<f32>()
}
