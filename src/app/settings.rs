//! The sweep settings being edited: a draft [`SweepSpec`] and the displayed
//! metric, as rows the user moves through and cycles with left/right.
//! Which rows exist depends on the corruption and the target; the target
//! row offers only targets the loaded model has (no `resid_mid` on parallel
//! blocks), and a sweep of a missing target is refused with the reason.

use tui_textarea::TextArea;

use crate::analysis::Estimate;
use crate::model::ModelConfig;
use crate::patching::spec::ALL_TARGETS;
use crate::patching::{Corruption, Direction, SweepSpec, Target, METRICS};

use super::prompts::{editor_text, line_editor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Target,
    Direction,
    Corruption,
    /// Token positions to corrupt (noise and ablations), typed as `1,3`.
    Positions,
    Samples,
    Seed,
    Window,
    Metric,
}

impl Row {
    pub fn label(self) -> &'static str {
        match self {
            Row::Target => "target",
            Row::Direction => "direction",
            Row::Corruption => "corruption",
            Row::Positions => "positions",
            Row::Samples => "samples",
            Row::Seed => "seed",
            Row::Window => "window",
            Row::Metric => "metric",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EstimateState {
    None,
    Pending,
    Ready(Estimate),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct SettingsState {
    pub spec: SweepSpec,
    pub row: usize,
    pub positions: TextArea<'static>,
    pub estimate: EstimateState,
}

fn cycle<T: PartialEq + Copy>(items: &[T], cur: T, delta: i32) -> T {
    let i = items.iter().position(|x| *x == cur).unwrap_or(0) as i32;
    let n = items.len() as i32;
    items[((i + delta).rem_euclid(n)) as usize]
}

impl SettingsState {
    pub fn new(spec: SweepSpec) -> Self {
        let positions = line_editor(&positions_text(&spec.corruption));
        Self {
            spec,
            row: 0,
            positions,
            estimate: EstimateState::None,
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut v = vec![Row::Target, Row::Direction, Row::Corruption];
        match self.spec.corruption {
            Corruption::Prompt => {}
            Corruption::Gaussian { .. } => v.extend([Row::Positions, Row::Samples, Row::Seed]),
            Corruption::Zero { .. } | Corruption::Mean { .. } => v.push(Row::Positions),
        }
        if matches!(self.spec.target, Target::TraceMlp | Target::TraceAttn) {
            v.push(Row::Window);
        }
        v.push(Row::Metric);
        v
    }

    pub fn current_row(&self) -> Row {
        let rows = self.rows();
        rows[self.row.min(rows.len() - 1)]
    }

    pub fn move_row(&mut self, delta: i32) {
        let n = self.rows().len() as i32;
        self.row = (self.row as i32 + delta).clamp(0, n - 1) as usize;
    }

    /// Cycles the value of the current row. Returns whether the spec
    /// changed (the metric row changes `metric` instead). `cfg` is the
    /// loaded model's, if any: it bounds the window and the targets offered.
    pub fn change(&mut self, delta: i32, metric: &mut usize, cfg: Option<&ModelConfig>) -> bool {
        let row = self.current_row();
        let n_layers = cfg.map_or(1, |c| c.n_layers);
        let s = &mut self.spec;
        match row {
            Row::Target => {
                // Skip targets the model lacks; one of them is always there.
                let mut t = s.target;
                for _ in 0..ALL_TARGETS.len() {
                    t = cycle(ALL_TARGETS, t, delta);
                    if cfg.is_none_or(|c| t.available_for(c)) {
                        break;
                    }
                }
                s.target = t;
            }
            Row::Direction => {
                s.direction = cycle(&[Direction::Denoise, Direction::Noise], s.direction, delta)
            }
            Row::Corruption => {
                let next = cycle(Corruption::KINDS, s.corruption.name(), delta);
                let positions = parse_positions(&editor_text(&self.positions)).unwrap_or_default();
                if let Some(c) = Corruption::of_kind(next, positions) {
                    s.corruption = c;
                }
            }
            Row::Positions => return false,
            Row::Samples => {
                if let Corruption::Gaussian { samples, .. } = &mut s.corruption {
                    *samples = (*samples as i32 + delta).clamp(1, 100) as usize;
                }
            }
            Row::Seed => {
                if let Corruption::Gaussian { seed, .. } = &mut s.corruption {
                    *seed = (*seed as i64 + delta as i64).max(0) as u64;
                }
            }
            Row::Window => {
                s.window = (s.window as i32 + delta).clamp(1, n_layers.max(1) as i32) as usize
            }
            Row::Metric => {
                *metric = (*metric as i32 + delta).rem_euclid(METRICS.len() as i32) as usize;
                return false;
            }
        }
        self.row = self.row.min(self.rows().len() - 1);
        true
    }

    /// Applies the positions field to the corruption; an error quotes the text.
    pub fn commit_positions(&mut self) -> Result<(), String> {
        let text = editor_text(&self.positions);
        let parsed = parse_positions(&text)?;
        match &mut self.spec.corruption {
            Corruption::Gaussian { positions, .. }
            | Corruption::Zero { positions }
            | Corruption::Mean { positions } => *positions = parsed,
            Corruption::Prompt => {}
        }
        Ok(())
    }

    /// The value shown for a row.
    pub fn value(&self, row: Row, metric: usize) -> String {
        let s = &self.spec;
        match row {
            Row::Target => s.target.name().to_string(),
            Row::Direction => s.direction.to_string(),
            Row::Corruption => s.corruption.name().to_string(),
            Row::Positions => {
                let t = editor_text(&self.positions);
                if t.is_empty() {
                    "auto (where prompts differ)".into()
                } else {
                    t
                }
            }
            Row::Samples => match s.corruption {
                Corruption::Gaussian { samples, .. } => samples.to_string(),
                _ => "-".into(),
            },
            Row::Seed => match s.corruption {
                Corruption::Gaussian { seed, .. } => seed.to_string(),
                _ => "-".into(),
            },
            Row::Window => s.window.to_string(),
            Row::Metric => METRICS[metric].to_string(),
        }
    }
}

/// `"1, 3"` → `[1, 3]`; empty → `[]` (automatic).
pub fn parse_positions(text: &str) -> Result<Vec<usize>, String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>().map_err(|_| {
                format!("positions {text:?}: {s:?} is not a token position; write e.g. 1,3 or leave empty for automatic")
            })
        })
        .collect()
}

fn positions_text(c: &Corruption) -> String {
    match c {
        Corruption::Gaussian { positions, .. }
        | Corruption::Zero { positions }
        | Corruption::Mean { positions } => positions
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Corruption::Prompt => String::new(),
    }
}
