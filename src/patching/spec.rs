//! `SweepSpec`: what to patch, in which direction, against which corruption.
//! Plain serialisable data: it is stored in sessions and printed in outputs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a sweep patches, with TransformerLens `patching.py` semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    ResidPre,
    ResidMid,
    ResidPost,
    AttnOut,
    MlpOut,
    /// `hook_z` of one head at every position.
    HeadOut,
    HeadQ,
    HeadK,
    HeadV,
    HeadPattern,
    HeadOutByPos,
    HeadQByPos,
    HeadKByPos,
    HeadVByPos,
    HeadPatternByPos,
    /// output, q, k, v, pattern of every head at all positions.
    HeadsEvery,
    /// resid_pre, attn_out, mlp_out at every layer and position.
    BlockEvery,
    /// ROME causal tracing: restore the hidden state (block output).
    TraceHidden,
    /// ROME: restore MLP outputs in a window of layers.
    TraceMlp,
    /// ROME: restore attention outputs in a window of layers.
    TraceAttn,
}

pub const ALL_TARGETS: &[Target] = &[
    Target::ResidPre,
    Target::ResidMid,
    Target::ResidPost,
    Target::AttnOut,
    Target::MlpOut,
    Target::HeadOut,
    Target::HeadQ,
    Target::HeadK,
    Target::HeadV,
    Target::HeadPattern,
    Target::HeadOutByPos,
    Target::HeadQByPos,
    Target::HeadKByPos,
    Target::HeadVByPos,
    Target::HeadPatternByPos,
    Target::HeadsEvery,
    Target::BlockEvery,
    Target::TraceHidden,
    Target::TraceMlp,
    Target::TraceAttn,
];

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::ResidPre => "resid_pre",
            Target::ResidMid => "resid_mid",
            Target::ResidPost => "resid_post",
            Target::AttnOut => "attn_out",
            Target::MlpOut => "mlp_out",
            Target::HeadOut => "head_out",
            Target::HeadQ => "head_q",
            Target::HeadK => "head_k",
            Target::HeadV => "head_v",
            Target::HeadPattern => "head_pattern",
            Target::HeadOutByPos => "head_out_by_pos",
            Target::HeadQByPos => "head_q_by_pos",
            Target::HeadKByPos => "head_k_by_pos",
            Target::HeadVByPos => "head_v_by_pos",
            Target::HeadPatternByPos => "head_pattern_by_pos",
            Target::HeadsEvery => "heads_every",
            Target::BlockEvery => "block_every",
            Target::TraceHidden => "trace_hidden",
            Target::TraceMlp => "trace_mlp",
            Target::TraceAttn => "trace_attn",
        }
    }

    /// One-line description for help screens.
    pub fn about(&self) -> &'static str {
        match self {
            Target::ResidPre => "residual stream entering each block, per position",
            Target::ResidMid => "residual stream between attention and MLP, per position",
            Target::ResidPost => "residual stream leaving each block, per position",
            Target::AttnOut => "attention output of each block, per position",
            Target::MlpOut => "MLP output of each block, per position",
            Target::HeadOut => "each head's output (hook_z) at all positions",
            Target::HeadQ => "each head's queries at all positions",
            Target::HeadK => "each key head's keys at all positions",
            Target::HeadV => "each value head's values at all positions",
            Target::HeadPattern => "each head's attention pattern, all positions",
            Target::HeadOutByPos => "each head's output at each position",
            Target::HeadQByPos => "each head's queries at each position",
            Target::HeadKByPos => "each key head's keys at each position",
            Target::HeadVByPos => "each value head's values at each position",
            Target::HeadPatternByPos => "each head's attention row at each destination position",
            Target::HeadsEvery => "output, q, k, v and pattern of every head",
            Target::BlockEvery => "resid_pre, attn_out and mlp_out at every layer and position",
            Target::TraceHidden => "ROME causal trace: restore one hidden state",
            Target::TraceMlp => "ROME causal trace: restore MLP outputs in a window of layers",
            Target::TraceAttn => {
                "ROME causal trace: restore attention outputs in a window of layers"
            }
        }
    }

    /// Whether results are laid out layers × positions (for the table view).
    pub fn is_layer_pos(&self) -> bool {
        matches!(
            self,
            Target::ResidPre
                | Target::ResidMid
                | Target::ResidPost
                | Target::AttnOut
                | Target::MlpOut
        )
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_TARGETS
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL_TARGETS.iter().map(|t| t.name()).collect();
                format!(
                    "unknown target {s:?}; valid targets are: {}",
                    names.join(", ")
                )
            })
    }
}

/// Denoising restores clean activations into the corrupted run (is this
/// sufficient?); noising puts corrupted activations into the clean run (is
/// this necessary?).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Denoise,
    Noise,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Denoise => "denoise",
            Direction::Noise => "noise",
        })
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "denoise" => Ok(Direction::Denoise),
            "noise" => Ok(Direction::Noise),
            _ => Err(format!("unknown direction {s:?}; use denoise or noise")),
        }
    }
}

/// How the corrupted run is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[derive(Default)]
pub enum Corruption {
    /// The corrupted prompt of each pair.
    #[default]
    Prompt,
    /// ROME: Gaussian noise added to the token embeddings at `positions`
    /// (default: where clean and corrupted prompts differ), `samples` seeded
    /// draws, metrics averaged over them.
    Gaussian {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        positions: Vec<usize>,
        /// Noise standard deviation; default 3 × the std of the embedding matrix.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<f32>,
        #[serde(default = "default_samples")]
        samples: usize,
        #[serde(default)]
        seed: u64,
    },
    /// Zero ablation: a patched cell is set to zero in the clean run. The
    /// corrupted baseline zeroes the token embeddings at `positions`.
    Zero {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        positions: Vec<usize>,
    },
    /// Mean ablation: a patched cell is set to its mean over positions and
    /// prompts of the clean runs. The corrupted baseline puts the mean token
    /// embedding at `positions`.
    Mean {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        positions: Vec<usize>,
    },
}

fn default_samples() -> usize {
    10
}

impl Corruption {
    /// Every kind, in the order the workbench cycles through them. A test
    /// checks this against serde's tags and [`Corruption::of_kind`].
    pub const KINDS: &'static [&'static str] = &["prompt", "gaussian", "zero", "mean"];

    /// The corruption of `kind` with its defaults, at `positions` (unused
    /// by `prompt`); `None` for a kind that does not exist.
    pub fn of_kind(kind: &str, positions: Vec<usize>) -> Option<Corruption> {
        Some(match kind {
            "prompt" => Corruption::Prompt,
            "gaussian" => Corruption::Gaussian {
                positions,
                scale: None,
                samples: default_samples(),
                seed: 0,
            },
            "zero" => Corruption::Zero { positions },
            "mean" => Corruption::Mean { positions },
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Corruption::Prompt => "prompt",
            Corruption::Gaussian { .. } => "gaussian",
            Corruption::Zero { .. } => "zero",
            Corruption::Mean { .. } => "mean",
        }
    }

    pub fn is_ablation(&self) -> bool {
        matches!(self, Corruption::Zero { .. } | Corruption::Mean { .. })
    }
}

/// Everything that defines a sweep apart from the model and the prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub target: Target,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub corruption: Corruption,
    /// Layers restored together by `trace_mlp` / `trace_attn` (ROME's window).
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_window() -> usize {
    10
}

impl SweepSpec {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            direction: Direction::Denoise,
            corruption: Corruption::Prompt,
            window: default_window(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Corruption::KINDS` lists exactly serde's tags, in any order, and
    /// each kind builds a corruption of that kind.
    #[test]
    fn corruption_kinds_are_the_serialised_kinds() {
        let err = serde_yaml::from_str::<Corruption>("kind: no_such_kind")
            .unwrap_err()
            .to_string();
        let tags: Vec<&str> = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"))
            .split(", ")
            .map(|t| t.trim_matches(|c: char| c == '`' || !c.is_ascii() || c.is_whitespace()))
            .map(|t| t.split('`').next().unwrap())
            .collect();
        let (mut a, mut b) = (tags.clone(), Corruption::KINDS.to_vec());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "{err}");
        for k in Corruption::KINDS {
            let c = Corruption::of_kind(k, vec![1]).unwrap();
            assert_eq!(c.name(), *k);
            let yaml = serde_yaml::to_string(&c).unwrap();
            assert!(yaml.starts_with(&format!("kind: {k}\n")), "{yaml}");
        }
        assert_eq!(Corruption::of_kind("no_such_kind", vec![]), None);
    }
}
