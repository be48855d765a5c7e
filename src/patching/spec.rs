//! `SweepSpec`: what to patch, in which direction, against which corruption.
//! Plain serialisable data: it is stored in sessions and printed in outputs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a sweep patches, with TransformerLens `patching.py` semantics.
///
/// Each variant has one row in [`TARGETS`], in declaration order (checked
/// when compiling; a variant added after `TraceAttn` moves that check).
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

/// One target: its name (in sessions, outputs and `--target`) and a
/// one-line description for help screens.
#[derive(Debug, Clone, Copy)]
pub struct TargetDef {
    pub target: Target,
    pub name: &'static str,
    pub about: &'static str,
}

/// Every target, in declaration order (the order menus offer them).
pub const TARGETS: &[TargetDef] = &[
    TargetDef {
        target: Target::ResidPre,
        name: "resid_pre",
        about: "residual stream entering each block, per position",
    },
    TargetDef {
        target: Target::ResidMid,
        name: "resid_mid",
        about: "residual stream between attention and MLP, per position",
    },
    TargetDef {
        target: Target::ResidPost,
        name: "resid_post",
        about: "residual stream leaving each block, per position",
    },
    TargetDef {
        target: Target::AttnOut,
        name: "attn_out",
        about: "attention output of each block, per position",
    },
    TargetDef {
        target: Target::MlpOut,
        name: "mlp_out",
        about: "MLP output of each block, per position",
    },
    TargetDef {
        target: Target::HeadOut,
        name: "head_out",
        about: "each head's output (hook_z) at all positions",
    },
    TargetDef {
        target: Target::HeadQ,
        name: "head_q",
        about: "each head's queries at all positions",
    },
    TargetDef {
        target: Target::HeadK,
        name: "head_k",
        about: "each key head's keys at all positions",
    },
    TargetDef {
        target: Target::HeadV,
        name: "head_v",
        about: "each value head's values at all positions",
    },
    TargetDef {
        target: Target::HeadPattern,
        name: "head_pattern",
        about: "each head's attention pattern, all positions",
    },
    TargetDef {
        target: Target::HeadOutByPos,
        name: "head_out_by_pos",
        about: "each head's output at each position",
    },
    TargetDef {
        target: Target::HeadQByPos,
        name: "head_q_by_pos",
        about: "each head's queries at each position",
    },
    TargetDef {
        target: Target::HeadKByPos,
        name: "head_k_by_pos",
        about: "each key head's keys at each position",
    },
    TargetDef {
        target: Target::HeadVByPos,
        name: "head_v_by_pos",
        about: "each value head's values at each position",
    },
    TargetDef {
        target: Target::HeadPatternByPos,
        name: "head_pattern_by_pos",
        about: "each head's attention row at each destination position",
    },
    TargetDef {
        target: Target::HeadsEvery,
        name: "heads_every",
        about: "output, q, k, v and pattern of every head",
    },
    TargetDef {
        target: Target::BlockEvery,
        name: "block_every",
        about: "resid_pre, attn_out and mlp_out at every layer and position",
    },
    TargetDef {
        target: Target::TraceHidden,
        name: "trace_hidden",
        about: "ROME causal trace: restore one hidden state",
    },
    TargetDef {
        target: Target::TraceMlp,
        name: "trace_mlp",
        about: "ROME causal trace: restore MLP outputs in a window of layers",
    },
    TargetDef {
        target: Target::TraceAttn,
        name: "trace_attn",
        about: "ROME causal trace: restore attention outputs in a window of layers",
    },
];

// One row per variant, in declaration order, so `Target as usize` indexes
// the table: a variant added without its row fails to compile here
// (`TraceAttn` is the last variant).
const _: () = {
    assert!(TARGETS.len() == Target::TraceAttn as usize + 1);
    let mut i = 0;
    while i < TARGETS.len() {
        assert!(TARGETS[i].target as usize == i);
        i += 1;
    }
};

const TARGET_LIST: [Target; TARGETS.len()] = {
    let mut out = [Target::ResidPre; TARGETS.len()];
    let mut i = 0;
    while i < TARGETS.len() {
        out[i] = TARGETS[i].target;
        i += 1;
    }
    out
};

/// Every target, in [`TARGETS`] order.
pub const ALL_TARGETS: &[Target] = &TARGET_LIST;

impl Target {
    pub fn def(&self) -> &'static TargetDef {
        &TARGETS[*self as usize]
    }

    pub fn name(&self) -> &'static str {
        self.def().name
    }

    /// One-line description for help screens.
    pub fn about(&self) -> &'static str {
        self.def().about
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

    /// Target names are serde's names, so sessions and outputs agree.
    #[test]
    fn target_names_are_the_serialised_names() {
        for t in ALL_TARGETS {
            let yaml = serde_yaml::to_string(t).unwrap();
            assert_eq!(yaml.trim_end(), t.name());
            assert_eq!(t.name().parse::<Target>(), Ok(*t));
            assert!(!t.about().is_empty());
        }
        assert_eq!(ALL_TARGETS.len(), 20);
    }

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
