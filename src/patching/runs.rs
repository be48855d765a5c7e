//! The unpatched runs a sweep patches between.
//!
//! For every prompt pair (and every noise sample) a [`RunPair`] holds the
//! *base* run that gets patched (corrupted for denoising, clean for noising)
//! and the *source* activations patched in (the other run's, or zeros/means
//! for ablations), plus what the fast path needs to resume the base run
//! mid-network: its `resid_pre` at every layer and its keys/values.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Result as CResult, Tensor};

use crate::model::{
    ActivationCache, Edit, ForwardOptions, HookPoint, HookSpec, KvCache, Transformer,
};

use super::corrupt::{
    ablation_sources, gaussian_noise, noise_positions, position_mask, tensor_std,
};
use super::error::SweepError;
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
    pub sets: metrics::AnswerSets,
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
) -> Result<(Vec<RunPair>, Vec<PairBaselines>, usize), SweepError> {
    let mut b = Builder::new(model, spec, hooks)?;
    for (pi, p) in pairs.iter().enumerate() {
        let clean = b.clean_run(pi, p)?;
        let positions = noise_positions(&spec.corruption, p)?;
        match &spec.corruption {
            Corruption::Prompt => b.prompt_runs(pi, p, clean)?,
            Corruption::Gaussian {
                scale,
                samples,
                seed,
                ..
            } => b.noise_runs(pi, p, clean, &positions, *scale, *samples, *seed)?,
            Corruption::Zero { .. } | Corruption::Mean { .. } => {
                b.ablation_run(pi, p, clean, &positions)?
            }
        }
    }
    b.fill_ablation_sources()?;
    Ok((b.runs, b.baselines, b.passes))
}

/// One unpatched forward: what it captured, its keys/values, last-position logits.
#[derive(Clone)]
struct Run {
    cache: ActivationCache,
    kv: KvCache,
    logits: Tensor,
}

/// The clean run of a pair, scored.
struct Clean {
    run: Run,
    logprobs: Tensor,
    metrics: Metrics,
}

/// Accumulates run pairs and baselines pair by pair.
struct Builder<'a> {
    model: &'a Transformer,
    spec: &'a SweepSpec,
    hooks: &'a HashSet<HookPoint>,
    /// `resid_pre` of every layer (to resume from) and the patched hooks.
    capture: HookSpec,
    /// 3 × this is the default Gaussian noise scale.
    embed_std: Option<f32>,
    /// The mean token embedding, for mean ablation.
    mean_embed: Option<Tensor>,
    runs: Vec<RunPair>,
    baselines: Vec<PairBaselines>,
    passes: usize,
}

impl<'a> Builder<'a> {
    fn new(
        model: &'a Transformer,
        spec: &'a SweepSpec,
        hooks: &'a HashSet<HookPoint>,
    ) -> Result<Self, SweepError> {
        let mut capture = HookSpec::new();
        for l in 0..model.cfg.n_layers {
            capture = capture.capture(HookPoint::ResidPre(l));
        }
        for h in hooks {
            capture = capture.capture(*h);
        }
        let embed_std = match spec.corruption {
            Corruption::Gaussian { scale: None, .. } => Some(tensor_std(&model.w_e)?),
            _ => None,
        };
        let mean_embed = match spec.corruption {
            Corruption::Mean { .. } => Some(model.w_e.to_dtype(DType::F32)?.mean(0)?),
            _ => None,
        };
        Ok(Self {
            model,
            spec,
            hooks,
            capture,
            embed_std,
            mean_embed,
            runs: Vec::new(),
            baselines: Vec::new(),
            passes: 0,
        })
    }

    /// An unpatched forward of `tokens` (with an embedding edit), refused
    /// if its logits are not finite: it is a baseline every cell is
    /// measured against.
    fn run(
        &mut self,
        tokens: &[u32],
        edit: Option<&Edit>,
        pair: usize,
        what: &'static str,
    ) -> Result<Run, SweepError> {
        let t = Tensor::new(tokens, self.model.device())?.unsqueeze(0)?;
        let mut hooks = self.capture.clone();
        if let Some(e) = edit {
            hooks = hooks.intervene(HookPoint::Embed, e.clone());
        }
        let opts = ForwardOptions {
            last_pos_only: true,
            return_kv: true,
            ..Default::default()
        };
        let out = self.model.forward(Some(&t), &hooks, &opts)?;
        self.passes += 1;
        let logits = out.logits.expect("logits").squeeze(0)?;
        if !all_finite(&logits)? {
            return Err(SweepError::NonFiniteBaseline { pair, run: what });
        }
        Ok(Run {
            cache: out.cache,
            kv: out.kv.expect("kv requested"),
            logits,
        })
    }

    fn score(&self, logits: &Tensor, clean_lp: &Tensor, p: &PreparedPair) -> CResult<Metrics> {
        Ok(metrics::compute_with(&logits.unsqueeze(0)?, clean_lp, p.answer, p.wrong, &p.sets)?[0])
    }

    fn clean_run(&mut self, pi: usize, p: &PreparedPair) -> Result<Clean, SweepError> {
        let run = self.run(&p.clean, None, pi, "clean")?;
        let logprobs = metrics::log_softmax(&run.logits)?;
        let metrics = self.score(&run.logits, &logprobs, p)?;
        Ok(Clean {
            run,
            logprobs,
            metrics,
        })
    }

    /// A run pair patching between the base run and a source cache.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        pi: usize,
        p: &PreparedPair,
        clean: &Clean,
        base: Run,
        base_metrics: Metrics,
        base_tokens: &[u32],
        base_embed_edit: Option<Edit>,
        source: &ActivationCache,
    ) {
        self.runs.push(RunPair {
            pair: pi,
            base_tokens: base_tokens.to_vec(),
            base_embed_edit,
            base: base.cache,
            base_kv: base.kv,
            base_metrics,
            source: pick(source, self.hooks),
            clean_logprobs: clean.logprobs.clone(),
            answer: p.answer,
            wrong: p.wrong,
            sets: p.sets.clone(),
        });
    }

    /// Patching between the clean and the corrupted prompt.
    fn prompt_runs(&mut self, pi: usize, p: &PreparedPair, clean: Clean) -> Result<(), SweepError> {
        let corr = self.run(&p.corrupted, None, pi, "corrupted")?;
        let corr_metrics = self.score(&corr.logits, &clean.logprobs, p)?;
        self.baselines.push(PairBaselines {
            clean: clean.metrics,
            corrupted: corr_metrics,
        });
        match self.spec.direction {
            Direction::Denoise => {
                let src = clean.run.cache.clone();
                self.push(pi, p, &clean, corr, corr_metrics, &p.corrupted, None, &src)
            }
            Direction::Noise => {
                let base = clean.run.clone();
                self.push(
                    pi,
                    p,
                    &clean,
                    base,
                    clean.metrics,
                    &p.clean,
                    None,
                    &corr.cache,
                )
            }
        }
        Ok(())
    }

    /// ROME: `samples` seeded noise draws on the clean prompt's embeddings.
    #[allow(clippy::too_many_arguments)]
    fn noise_runs(
        &mut self,
        pi: usize,
        p: &PreparedPair,
        clean: Clean,
        positions: &[usize],
        scale: Option<f32>,
        samples: usize,
        seed: u64,
    ) -> Result<(), SweepError> {
        let (n_pos, d_model) = (p.clean.len(), self.model.cfg.d_model);
        let scale = scale.unwrap_or_else(|| 3.0 * self.embed_std.unwrap_or(1.0));
        let mut noised = Vec::new();
        for s in 0..samples.max(1) {
            let dev = self.model.device();
            let noise = gaussian_noise(n_pos, d_model, positions, scale, seed, pi, s, dev)?;
            let edit = Edit::Add(noise);
            let run = self.run(&p.clean, Some(&edit), pi, "noised")?;
            let m = self.score(&run.logits, &clean.logprobs, p)?;
            noised.push(m);
            match self.spec.direction {
                Direction::Denoise => {
                    let src = clean.run.cache.clone();
                    self.push(pi, p, &clean, run, m, &p.clean, Some(edit), &src)
                }
                Direction::Noise => {
                    let base = clean.run.clone();
                    self.push(
                        pi,
                        p,
                        &clean,
                        base,
                        clean.metrics,
                        &p.clean,
                        None,
                        &run.cache,
                    )
                }
            }
        }
        self.baselines.push(PairBaselines {
            clean: clean.metrics,
            corrupted: Metrics::mean(&noised),
        });
        Ok(())
    }

    /// Zero / mean ablation: the baseline ablates the embeddings at
    /// `positions`; sources (zeros or means over all pairs) come later.
    fn ablation_run(
        &mut self,
        pi: usize,
        p: &PreparedPair,
        clean: Clean,
        positions: &[usize],
    ) -> Result<(), SweepError> {
        if self.spec.direction == Direction::Denoise {
            return Err(SweepError::Invalid(format!(
                "{} ablation replaces activations of the clean run, so it only runs with direction noise",
                self.spec.corruption.name()
            )));
        }
        let (dev, d_model) = (self.model.device(), self.model.cfg.d_model);
        let mask = position_mask(p.clean.len(), positions, dev)?;
        let value = match &self.mean_embed {
            Some(m) => m.to_dtype(self.model.dtype())?.reshape((1, 1, d_model))?,
            None => Tensor::zeros((1, 1, d_model), self.model.dtype(), dev)?,
        };
        let edit = Edit::Replace { mask, value };
        let ablated = self.run(&p.clean, Some(&edit), pi, "ablated")?;
        self.baselines.push(PairBaselines {
            clean: clean.metrics,
            corrupted: self.score(&ablated.logits, &clean.logprobs, p)?,
        });
        let Clean { run, metrics, .. } = &clean;
        let base = Run {
            cache: run.cache.clone(),
            kv: run.kv.clone(),
            logits: run.logits.clone(),
        };
        // Sources are filled by `fill_ablation_sources`: means span all pairs.
        self.push(
            pi,
            p,
            &clean,
            base,
            *metrics,
            &p.clean,
            None,
            &ActivationCache::default(),
        );
        Ok(())
    }

    fn fill_ablation_sources(&mut self) -> Result<(), SweepError> {
        if !self.spec.corruption.is_ablation() {
            return Ok(());
        }
        let mean = matches!(self.spec.corruption, Corruption::Mean { .. });
        let ablated = ablation_sources(&self.runs, self.hooks, mean)?;
        for r in self.runs.iter_mut() {
            r.source = ablated.clone();
        }
        Ok(())
    }
}

fn all_finite(t: &Tensor) -> CResult<bool> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().all(|x| x.is_finite()))
}

fn pick(cache: &ActivationCache, hooks: &HashSet<HookPoint>) -> HashMap<HookPoint, Tensor> {
    hooks
        .iter()
        .filter_map(|h| cache.get(*h).map(|t| (*h, t.clone())))
        .collect()
}
