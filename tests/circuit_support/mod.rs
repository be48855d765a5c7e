//! Helpers shared by the circuit tests (`circuits.rs`,
//! `circuit_estimators.rs`): the tiny random models, the prompt pair and
//! its unpatched runs.
#![allow(dead_code)]

use candle_core::{DType, Device};
use patchbench::circuits::graph::Graph;
use patchbench::circuits::runs::{self, CircuitSpecRuns, Runs};
use patchbench::model::random::{preset_config, random_weights};
use patchbench::model::Transformer;
use patchbench::patching::{Corruption, Direction, PreparedPair};

/// A random model of a `random:` preset (seed 7, f32).
pub fn model(preset: &str) -> Transformer {
    let cfg = preset_config(preset).unwrap();
    let w = random_weights(&cfg, 7, &Device::Cpu, DType::F32).unwrap();
    Transformer::new(cfg, w).unwrap()
}

/// Seven tokens; the corrupted prompt changes the fourth.
pub fn pair() -> PreparedPair {
    PreparedPair {
        clean: vec![3, 17, 9, 250, 4, 11, 60],
        corrupted: vec![3, 17, 9, 251, 4, 11, 60],
        answer: 5,
        wrong: 8,
        sets: Default::default(),
    }
}

/// Denoising with the corrupted prompt (the base run is the corrupted one).
pub fn prompt_spec() -> CircuitSpecRuns {
    CircuitSpecRuns {
        direction: Direction::Denoise,
        corruption: Corruption::Prompt,
    }
}

/// The unpatched runs of [`pair`] under [`prompt_spec`].
pub fn prompt_runs(m: &Transformer, g: &Graph) -> Runs {
    runs::build(m, g, &[pair()], &prompt_spec()).unwrap()
}

/// Largest |a − b| over the entries finite in both (NaN marks non-edges).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
