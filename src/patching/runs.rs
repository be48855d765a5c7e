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

/// Prompt tokens the unpatched forwards of a sweep batch together: prompts
/// of one length share a forward of up to this many tokens (each row is
/// the same computation as its own forward, so the runs are unchanged).
const BASE_BATCH_TOKENS: usize = 512;

/// Runs the unpatched forwards for every pair and sample.
///
/// The unedited runs (every clean prompt, and every corrupted prompt when
/// the corruption is the prompt itself) go first, batched across pairs:
/// the clean prompts of a dataset share forwards, and so do its corrupted
/// ones, as its patched runs do.
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
    let prompt = matches!(spec.corruption, Corruption::Prompt);
    let mut wants = Vec::with_capacity(pairs.len() * 2);
    for (pi, p) in pairs.iter().enumerate() {
        wants.push(Want::new(&p.clean, pi, "clean"));
        if prompt {
            wants.push(Want::new(&p.corrupted, pi, "corrupted"));
        }
    }
    let mut unedited = b.batched_runs(&wants)?.into_iter();
    for (pi, p) in pairs.iter().enumerate() {
        let clean = b.clean_run(p, unedited.next().expect("one clean run per pair"))?;
        let positions = noise_positions(&spec.corruption, p)?;
        match &spec.corruption {
            Corruption::Prompt => {
                let corr = unedited.next().expect("one corrupted run per pair");
                b.prompt_runs(pi, p, clean, corr)?
            }
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

/// The indices of `keys` grouped by key, groups in order of first
/// appearance.
fn groups<K: PartialEq>(keys: impl Iterator<Item = K>) -> Vec<(K, Vec<usize>)> {
    let mut out: Vec<(K, Vec<usize>)> = Vec::new();
    for (i, k) in keys.enumerate() {
        match out.iter_mut().find(|(x, _)| *x == k) {
            Some((_, idx)) => idx.push(i),
            None => out.push((k, vec![i])),
        }
    }
    out
}

/// The forwards that run prompts of these token lengths (in order): the
/// indices of one length, in chunks of up to [`BASE_BATCH_TOKENS`] tokens.
fn prompt_batches(lens: impl Iterator<Item = usize>) -> Vec<(usize, Vec<usize>)> {
    groups(lens)
        .into_iter()
        .flat_map(|(n, idx)| {
            let rows = (BASE_BATCH_TOKENS / n.max(1)).max(1);
            idx.chunks(rows)
                .map(|c| (n, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Noise samples of a prompt of `n_pos` tokens that share one forward.
fn noise_rows(n_pos: usize) -> usize {
    (BASE_BATCH_TOKENS / n_pos.max(1)).max(1)
}

/// The forward passes [`build_runs`] spends on `pairs`: the batched
/// unedited prompts (clean, and corrupted when the corruption is the
/// prompt), then a pair's noise samples in shared forwards, or one
/// ablated forward per pair.
pub fn base_passes(pairs: &[PreparedPair], corruption: &Corruption) -> usize {
    let clean = prompt_batches(pairs.iter().map(|p| p.clean.len())).len();
    let corrupted = match corruption {
        Corruption::Prompt => prompt_batches(pairs.iter().map(|p| p.corrupted.len())).len(),
        _ => 0,
    };
    let edited = match corruption {
        Corruption::Prompt => 0,
        Corruption::Gaussian { samples, .. } => pairs
            .iter()
            .map(|p| samples.max(&1).div_ceil(noise_rows(p.clean.len())))
            .sum(),
        Corruption::Zero { .. } | Corruption::Mean { .. } => pairs.len(),
    };
    clean + corrupted + edited
}

/// An unedited forward a sweep needs: the prompt, its pair and which run
/// it is (for the error when its logits are not finite).
struct Want<'t> {
    tokens: &'t [u32],
    pair: usize,
    what: &'static str,
}

impl<'t> Want<'t> {
    fn new(tokens: &'t [u32], pair: usize, what: &'static str) -> Self {
        Want { tokens, pair, what }
    }
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
        let mut runs = self.forward_rows(&t, &hooks)?;
        let run = runs.pop().expect("one row");
        if !all_finite(&run.logits)? {
            return Err(SweepError::NonFiniteBaseline { pair, run: what });
        }
        Ok(run)
    }

    /// The unedited forwards of `wants`, in order: prompts of one kind and
    /// length share forwards of up to [`BASE_BATCH_TOKENS`] tokens. Refused, for
    /// the first of `wants` whose logits are not finite, as [`Self::run`].
    fn batched_runs(&mut self, wants: &[Want<'_>]) -> Result<Vec<Run>, SweepError> {
        let mut out: Vec<Option<Run>> = (0..wants.len()).map(|_| None).collect();
        let hooks = self.capture.clone();
        // Kinds (clean, corrupted) run in separate forwards: each row's
        // tensors are views of its forward's, so a run a sweep keeps (the
        // corrupted base when denoising) keeps alive only its own kind's.
        for (_, idx) in groups(wants.iter().map(|w| w.what)) {
            for (n_pos, chunk) in prompt_batches(idx.iter().map(|&i| wants[i].tokens.len())) {
                let chunk: Vec<usize> = chunk.iter().map(|&j| idx[j]).collect();
                let flat: Vec<u32> = chunk
                    .iter()
                    .flat_map(|&i| wants[i].tokens.iter().copied())
                    .collect();
                let t = Tensor::from_vec(flat, (chunk.len(), n_pos), self.model.device())?;
                for (&i, run) in chunk.iter().zip(self.forward_rows(&t, &hooks)?) {
                    out[i] = Some(run);
                }
            }
        }
        let runs: Vec<Run> = out.into_iter().map(|r| r.expect("every run")).collect();
        for (w, run) in wants.iter().zip(&runs) {
            if !all_finite(&run.logits)? {
                return Err(SweepError::NonFiniteBaseline {
                    pair: w.pair,
                    run: w.what,
                });
            }
        }
        Ok(runs)
    }

    /// One forward of `tokens` (`[rows, n_pos]`), split into one run per row
    /// (each row's cache, keys/values and logits are views of the batch's).
    fn forward_rows(&mut self, tokens: &Tensor, hooks: &HookSpec) -> CResult<Vec<Run>> {
        let opts = ForwardOptions {
            last_pos_only: true,
            return_kv: true,
            ..Default::default()
        };
        let out = self.model.forward(Some(tokens), hooks, &opts)?;
        self.passes += 1;
        let logits = out.logits.expect("logits");
        let kv = out.kv.expect("kv requested");
        (0..tokens.dim(0)?)
            .map(|r| {
                let mut cache = ActivationCache::default();
                for &h in out.cache.hooks() {
                    let t = out.cache.get(h).expect("listed hook");
                    cache.insert(h, t.narrow(0, r, 1)?);
                }
                let layers = kv
                    .layers
                    .iter()
                    .map(|(k, v)| Ok((k.narrow(0, r, 1)?, v.narrow(0, r, 1)?)))
                    .collect::<CResult<_>>()?;
                Ok(Run {
                    cache,
                    kv: KvCache { layers },
                    logits: logits.get(r)?,
                })
            })
            .collect()
    }

    fn score(&self, logits: &Tensor, clean_lp: &Tensor, p: &PreparedPair) -> CResult<Metrics> {
        Ok(metrics::compute_with(&logits.unsqueeze(0)?, clean_lp, p.answer, p.wrong, &p.sets)?[0])
    }

    /// Scores a pair's clean run.
    fn clean_run(&mut self, p: &PreparedPair, run: Run) -> Result<Clean, SweepError> {
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
    fn prompt_runs(
        &mut self,
        pi: usize,
        p: &PreparedPair,
        clean: Clean,
        corr: Run,
    ) -> Result<(), SweepError> {
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
        let dev = self.model.device();
        let noises = (0..samples.max(1))
            .map(|s| gaussian_noise(n_pos, d_model, positions, scale, seed, pi, s, dev))
            .collect::<CResult<Vec<_>>>()?;
        // The samples share forwards: the clean prompt in every row, each
        // row with its own noise.
        let mut runs = Vec::with_capacity(noises.len());
        let prompt = Tensor::new(p.clean.as_slice(), dev)?.unsqueeze(0)?;
        for chunk in noises.chunks(noise_rows(n_pos)) {
            let hooks = self
                .capture
                .clone()
                .intervene(HookPoint::Embed, Edit::Add(Tensor::cat(chunk, 0)?));
            let tokens = prompt.repeat((chunk.len(), 1))?;
            runs.extend(self.forward_rows(&tokens, &hooks)?);
        }
        let mut noised = Vec::new();
        for (run, noise) in runs.into_iter().zip(noises) {
            if !all_finite(&run.logits)? {
                return Err(SweepError::NonFiniteBaseline {
                    pair: pi,
                    run: "noised",
                });
            }
            let edit = Edit::Add(noise);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patching::spec::Target;
    use crate::util::testing::max_diff;
    use candle_core::Device;

    fn pair(clean: &[u32], corrupted: &[u32]) -> PreparedPair {
        PreparedPair {
            clean: clean.to_vec(),
            corrupted: corrupted.to_vec(),
            answer: 5,
            wrong: 8,
            sets: Default::default(),
        }
    }

    /// Batching the unpatched prompts across pairs (of two lengths, so two
    /// batches) and a pair's noise samples gives each run what its own
    /// forward gives, and spends the forwards `base_passes` counts.
    #[test]
    fn batched_base_runs_equal_runs_alone() {
        let cfg = crate::model::random::preset_config("gpt2-tiny").unwrap();
        let w = crate::model::random::random_weights(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
        let m = Transformer::new(cfg, w).unwrap();
        let pairs = [
            pair(&[1, 2, 3, 4, 5], &[1, 7, 3, 4, 5]),
            pair(&[9, 2, 3], &[9, 2, 6]),
            pair(&[4, 4, 3, 2, 1], &[4, 4, 3, 9, 1]),
        ];
        let spec = SweepSpec::new(Target::HeadOut);
        let hooks: HashSet<HookPoint> = (0..m.cfg.n_layers).map(HookPoint::Z).collect();
        let (runs, baselines, passes) = build_runs(&m, &pairs, &spec, &hooks).unwrap();
        // Clean and corrupted prompts apart, each in one forward per length.
        assert_eq!(passes, 4);
        assert_eq!(passes, base_passes(&pairs, &spec.corruption));
        for (i, p) in pairs.iter().enumerate() {
            let (alone, base_alone, one) =
                build_runs(&m, std::slice::from_ref(p), &spec, &hooks).unwrap();
            assert_eq!(one, 2);
            let (a, b) = (&runs[i], &alone[0]);
            assert_eq!(a.base_tokens, b.base_tokens);
            for h in b.base.hooks() {
                let d = max_diff(a.base.get(*h).unwrap(), b.base.get(*h).unwrap());
                assert!(d < 1e-5, "pair {i} {h:?}: {d}");
            }
            assert_eq!(a.base.len(), b.base.len());
            for (h, t) in &b.source {
                assert!(max_diff(&a.source[h], t) < 1e-5, "pair {i} source {h:?}");
            }
            for (l, ((ka, va), (kb, vb))) in
                a.base_kv.layers.iter().zip(&b.base_kv.layers).enumerate()
            {
                assert!(
                    max_diff(ka, kb) < 1e-5 && max_diff(va, vb) < 1e-5,
                    "pair {i} kv {l}"
                );
            }
            assert!(max_diff(&a.clean_logprobs, &b.clean_logprobs) < 1e-5);
            let (x, y) = (baselines[i], base_alone[0]);
            assert!((x.clean.logit_diff() - y.clean.logit_diff()).abs() < 1e-5);
            assert!((x.corrupted.logit_diff() - y.corrupted.logit_diff()).abs() < 1e-5);
        }
        let noise = SweepSpec {
            corruption: Corruption::Gaussian {
                positions: vec![],
                scale: None,
                samples: 3,
                seed: 1,
            },
            ..SweepSpec::new(Target::TraceHidden)
        };
        let (runs, _, passes) = build_runs(&m, &pairs, &noise, &hooks).unwrap();
        // The clean prompts (two lengths), then each pair's 3 samples in one.
        assert_eq!(passes, 2 + pairs.len());
        assert_eq!(passes, base_passes(&pairs, &noise.corruption));
        // Each batched sample equals its own forward with its own noise.
        let mut b = Builder::new(&m, &noise, &hooks).unwrap();
        let scale = 3.0 * b.embed_std.unwrap();
        for (pi, p) in pairs.iter().enumerate() {
            let positions = noise_positions(&noise.corruption, p).unwrap();
            for s in 0..3 {
                let e = gaussian_noise(
                    p.n_pos(),
                    m.cfg.d_model,
                    &positions,
                    scale,
                    1,
                    pi,
                    s,
                    &Device::Cpu,
                )
                .unwrap();
                let alone = b.run(&p.clean, Some(&Edit::Add(e)), pi, "noised").unwrap();
                let batched = &runs[pi * 3 + s];
                for l in 0..m.cfg.n_layers {
                    let h = HookPoint::ResidPre(l);
                    let d = max_diff(batched.base.get(h).unwrap(), alone.cache.get(h).unwrap());
                    assert!(d < 1e-5, "pair {pi} sample {s} {h:?}: {d}");
                }
                let d = max_diff(&batched.base_kv.layers[1].0, &alone.kv.layers[1].0);
                assert!(d < 1e-5, "pair {pi} sample {s} keys: {d}");
            }
            // The samples' noises are their own.
            let last = HookPoint::ResidPre(m.cfg.n_layers - 1);
            let (a, b) = (&runs[pi * 3].base, &runs[pi * 3 + 1].base);
            assert!(max_diff(a.get(last).unwrap(), b.get(last).unwrap()) > 1e-3);
        }
    }
}
