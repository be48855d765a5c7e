//! Refusals before a sweep runs: a [`SweepSpec`] that makes no sense on its
//! own ([`SweepSpec::validate`]) or that patches a hook the loaded model does
//! not have ([`SweepSpec::check_model`], [`Target::available_for`]).
//!
//! Every entry point that starts a sweep (the engine, the CLI, sessions, the
//! TUI) calls these, so a bad value is named with its fix instead of
//! surfacing later as a panic deep in the engine or as a huge allocation.
//! The rules mirror the session validator's (`samples >= 1`, a positive
//! finite noise scale, a window of at least one layer for ROME windows) and
//! add an upper bound on noise samples, which multiply every base run.

use crate::model::{HookPoint, ModelConfig};

use super::spec::{Corruption, SweepSpec, Target, ALL_TARGETS};

/// The most Gaussian noise samples one sweep may average: each sample is a
/// full set of base runs and patched runs, and ROME uses 10.
pub const MAX_SAMPLES: usize = 10_000;

/// Why a sweep spec is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "gaussian noise samples is 0, but metrics are averaged over at least one noise draw; \
         use 1 or more (--samples 10 is the default, as in ROME)"
    )]
    ZeroSamples,
    #[error(
        "gaussian noise samples is {samples}, more than the {max} one sweep allows (every sample \
         repeats all base and patched runs); use at most {max} (ROME uses 10)"
    )]
    TooManySamples { samples: usize, max: usize },
    #[error(
        "gaussian noise scale is {scale}, but it must be a positive finite standard deviation; \
         give one such as 0.5, or omit --noise-scale for 3 x the std of the token embeddings"
    )]
    BadNoiseScale { scale: f32 },
    #[error(
        "window is 0 for target {target}, but ROME restores at least one layer; use --window 1 \
         or more (10 is the default, clipped to the model's layers)"
    )]
    ZeroWindow { target: Target },
    #[error(
        "target {target} patches blocks.{{l}}.{hook}, which this {family} model does not have: \
         {reason}; use {instead} instead"
    )]
    TargetUnavailable {
        target: Target,
        family: String,
        hook: String,
        reason: &'static str,
        instead: &'static str,
    },
}

impl SweepSpec {
    /// Checks the values that make sense for no model at all.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Corruption::Gaussian { samples, scale, .. } = &self.corruption {
            if *samples == 0 {
                return Err(SpecError::ZeroSamples);
            }
            if *samples > MAX_SAMPLES {
                return Err(SpecError::TooManySamples {
                    samples: *samples,
                    max: MAX_SAMPLES,
                });
            }
            if let Some(s) = scale {
                if !(s.is_finite() && *s > 0.0) {
                    return Err(SpecError::BadNoiseScale { scale: *s });
                }
            }
        }
        if self.target.uses_window() && self.window == 0 {
            return Err(SpecError::ZeroWindow {
                target: self.target,
            });
        }
        Ok(())
    }

    /// Checks that the model has every hook the target patches.
    pub fn check_model(&self, cfg: &ModelConfig) -> Result<(), SpecError> {
        self.target.check_model(cfg)
    }
}

impl Target {
    /// Whether `window` matters (ROME's windowed restorations).
    pub fn uses_window(&self) -> bool {
        matches!(self, Target::TraceMlp | Target::TraceAttn)
    }

    /// The per-layer hooks this target patches, as layer-0 examples.
    pub fn hooks(&self) -> Vec<HookPoint> {
        use HookPoint as H;
        match self {
            Target::ResidPre => vec![H::ResidPre(0)],
            Target::ResidMid => vec![H::ResidMid(0)],
            Target::ResidPost | Target::TraceHidden => vec![H::ResidPost(0)],
            Target::AttnOut | Target::TraceAttn => vec![H::AttnOut(0)],
            Target::MlpOut | Target::TraceMlp => vec![H::MlpOut(0)],
            Target::HeadOut | Target::HeadOutByPos => vec![H::Z(0)],
            Target::HeadQ | Target::HeadQByPos => vec![H::Q(0)],
            Target::HeadK | Target::HeadKByPos => vec![H::K(0)],
            Target::HeadV | Target::HeadVByPos => vec![H::V(0)],
            Target::HeadPattern | Target::HeadPatternByPos => vec![H::Pattern(0)],
            Target::HeadsEvery => vec![H::Z(0), H::Q(0), H::K(0), H::V(0), H::Pattern(0)],
            Target::BlockEvery => vec![H::ResidPre(0), H::AttnOut(0), H::MlpOut(0)],
        }
    }

    /// Whether a model with this configuration has every hook the target patches.
    pub fn available_for(&self, cfg: &ModelConfig) -> bool {
        self.check_model(cfg).is_ok()
    }

    /// Like [`Target::available_for`], with the reason when it is not.
    pub fn check_model(&self, cfg: &ModelConfig) -> Result<(), SpecError> {
        for hook in self.hooks() {
            if let Some((reason, instead)) = missing_hook(cfg, hook) {
                let name = hook.to_string();
                return Err(SpecError::TargetUnavailable {
                    target: *self,
                    family: cfg.family.clone(),
                    hook: name.strip_prefix("blocks.0.").unwrap_or(&name).to_string(),
                    reason,
                    instead,
                });
            }
        }
        Ok(())
    }
}

/// The targets a model can be swept with, in [`ALL_TARGETS`] order.
pub fn available_targets(cfg: &ModelConfig) -> Vec<Target> {
    ALL_TARGETS
        .iter()
        .copied()
        .filter(|t| t.available_for(cfg))
        .collect()
}

/// Why a model lacks `hook` (and what to patch instead), or `None` if the
/// forward pass has that hook site.
fn missing_hook(cfg: &ModelConfig, hook: HookPoint) -> Option<(&'static str, &'static str)> {
    match hook {
        // forward.rs: parallel blocks compute `x + attn(ln1 x) + mlp(ln2 x)`
        // and never form the residual stream between the two.
        HookPoint::ResidMid(_) if cfg.parallel_attn_mlp => Some((
            "its attention and MLP run in parallel on hook_resid_pre (GPT-NeoX/Pythia, GPT-J \
             style), so there is no residual stream between them",
            "resid_pre, resid_post, attn_out or mlp_out",
        )),
        _ => None,
    }
}
