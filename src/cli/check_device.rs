//! `patchbench check-device`: the same computations on a device and on the
//! CPU, compared, so a GPU build can be trusted before it is used.
//!
//! Three parts, each printed as it runs:
//! - every fixture model under `--fixtures` (a directory with a config and
//!   safetensors or a `model.gguf`, or a directory of GGUF models named in
//!   its `reference.json`, as `tests/fixtures/gguf`): logits and every hook of
//!   one forward pass on the device in each `--weights` mode, against the CPU
//!   in f32;
//! - fixtures with a `patching_reference.json`: resid_pre and head_out sweeps
//!   of its prompt pair, device against CPU;
//! - each `--sweep-model`: the same two sweeps on the device in each mode,
//!   timed, against f32 on the device (or on the CPU with `--cpu-reference`).
//!
//! `quantized` keeps GGUF blocks as they are, so it is compared with the same
//! blocks on the CPU (quantized against f32 would measure the quantization,
//! not the device); it applies to GGUF fixtures and `random:` presets only,
//! and needs `--cpu-reference` for a sweep model.
//!
//! f32 is compared by absolute difference (`--tol-f32`, default 1e-3). Half
//! precision rounds every stored value to 8 (bf16) or 11 (f16) bits, and a
//! quantized matmul rounds its input to 8 bits in its own way on each device,
//! so those differences are taken relative to the reference's scale:
//! max |a - b| / max(1, max |b|), within `--tol-half` (default 0.1; see README,
//! "GPU", for what we measured). Any difference beyond tolerance, or a value
//! finite on one side and not the other, is a mismatch, and the command exits
//! non-zero.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;

use patchbench::model::device::device_name;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::WeightsMode;
use patchbench::model::{ForwardOptions, HookSpec, LoadedModel};
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, PromptPair, SweepResult, SweepSpec, Target,
};

/// Largest absolute f32 difference accepted (the bound).
pub const F32_TOL: f32 = 1e-3;
/// Largest scaled half-precision difference accepted (see the module docs).
pub const HALF_TOL: f32 = 0.1;

#[derive(Args, Debug)]
pub struct CheckDeviceArgs {
    /// The device to check: cuda or cuda:N (cpu checks the comparisons themselves).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// A directory whose subdirectories are fixture models (tests/fixtures).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Weights modes to run on the device: f32, bf16, f16, quantized
    /// (`--dtypes` is an alias).
    #[arg(
        long,
        alias = "dtypes",
        value_delimiter = ',',
        default_value = "f32,bf16"
    )]
    pub weights: Vec<String>,
    /// Largest absolute difference accepted in f32.
    #[arg(long, default_value_t = F32_TOL)]
    pub tol_f32: f32,
    /// Largest difference accepted in bf16, f16 and quantized, relative to
    /// max(1, max |reference|).
    #[arg(long, default_value_t = HALF_TOL)]
    pub tol_half: f32,
    /// Models to time resid_pre and head_out sweeps on (repeatable), e.g. random:gpt2-small.
    #[arg(long)]
    pub sweep_model: Vec<String>,
    /// Compare --sweep-model sweeps with the CPU in f32 instead of the device in f32.
    #[arg(long)]
    pub cpu_reference: bool,
}

/// The prompt pair of the sweeps (an IOI pair: one token each answer in the
/// GPT-2 and SmolLM2 vocabularies).
fn ioi_pair() -> PromptPair {
    PromptPair {
        clean: "When Mary and John went to the store, John gave a drink to".into(),
        corrupted: Some("When John and Mary went to the store, John gave a drink to".into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

const SWEEP_TARGETS: [Target; 2] = [Target::ResidPre, Target::HeadOut];

/// Counts checks and mismatches, printing one line per check.
struct Tally {
    checks: usize,
    mismatches: usize,
    tol_f32: f32,
    tol_half: f32,
}

impl Tally {
    /// Records a difference `d` of a run in `mode`; returns the verdict word.
    fn judge(&mut self, mode: WeightsMode, d: f32) -> &'static str {
        self.checks += 1;
        let tol = if mode == WeightsMode::F32 {
            self.tol_f32
        } else {
            self.tol_half
        };
        if d <= tol {
            "ok"
        } else {
            self.mismatches += 1;
            "MISMATCH"
        }
    }
}

pub fn check_device(args: &CheckDeviceArgs) -> Result<()> {
    let device = super::device_from_arg(&args.device)?;
    let modes = args
        .weights
        .iter()
        .map(|d| d.parse::<WeightsMode>())
        .collect::<Result<Vec<_>, _>>()?;
    if modes.is_empty() {
        bail!(
            "--weights is empty: name at least one of {}",
            WeightsMode::NAMES
        );
    }
    println!(
        "device {}; f32 within {:.0e} absolute, bf16/f16/quantized within {} of max(1, max |reference|)",
        device_name(&device),
        args.tol_f32,
        args.tol_half
    );
    let mut tally = Tally {
        checks: 0,
        mismatches: 0,
        tol_f32: args.tol_f32,
        tol_half: args.tol_half,
    };
    let fixture_models = match &args.fixtures {
        Some(dir) => fixtures(dir)?,
        None => Vec::new(),
    };
    if fixture_models.is_empty() && args.sweep_model.is_empty() {
        bail!("nothing to check: give --fixtures DIR (holding fixture models, e.g. tests/fixtures) and/or --sweep-model SOURCE");
    }
    for fixture in fixture_models {
        let name = fixture.name.clone();
        check_fixture(&fixture, &device, &modes, &mut tally)
            .with_context(|| format!("fixture {name}"))?;
    }
    for model in &args.sweep_model {
        check_sweep_model(model, &device, &modes, args.cpu_reference, &mut tally)
            .with_context(|| format!("sweep model {model:?}"))?;
    }
    println!("{} checks, {} mismatches", tally.checks, tally.mismatches);
    if tally.mismatches > 0 {
        bail!(
            "{} of {} checks on {} differ beyond tolerance",
            tally.mismatches,
            tally.checks,
            device_name(&device)
        );
    }
    Ok(())
}

/// A fixture model: where it loads from, the prompt of its forward pass and
/// the prompt pair of its sweeps, if it has one.
struct Fixture {
    name: String,
    source: String,
    prompt: String,
    pair: Option<PromptPair>,
}

impl Fixture {
    fn is_gguf(&self) -> bool {
        self.source.ends_with(".gguf")
    }
}

/// Fixture models under `dir`, in name order: a subdirectory with a
/// `config.json` is loaded as a directory, one with a `model.gguf` as that
/// file, and each `NAME.gguf` of a subdirectory whose `reference.json` has a
/// `NAME` entry with a prompt as that file (named `SUBDIR/NAME`).
fn fixtures(dir: &Path) -> Result<Vec<Fixture>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--fixtures {}: cannot list it", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let reference = read_json(&path.join("reference.json"))?;
        let prompt = |v: &serde_json::Value| v["prompt"].as_str().map(String::from);
        let pair = read_json(&path.join("patching_reference.json"))?
            .map(|v| serde_json::from_value::<PromptPair>(v["prompts"].clone()))
            .transpose()
            .with_context(|| {
                format!(
                    "{}: prompts",
                    path.join("patching_reference.json").display()
                )
            })?;
        let single = if path.join("config.json").is_file() {
            Some(path.clone())
        } else if path.join("model.gguf").is_file() {
            Some(path.join("model.gguf"))
        } else {
            None
        };
        if let Some(source) = single {
            out.push(Fixture {
                name,
                source: source.to_string_lossy().into_owned(),
                prompt: reference
                    .as_ref()
                    .and_then(prompt)
                    .unwrap_or_else(|| DEFAULT_PROMPT.into()),
                pair,
            });
            continue;
        }
        let Some(serde_json::Value::Object(models)) = reference else {
            continue;
        };
        for (stem, entry) in models {
            let file = path.join(format!("{stem}.gguf"));
            if let (Some(p), true) = (prompt(&entry), file.is_file()) {
                out.push(Fixture {
                    name: format!("{name}/{stem}"),
                    source: file.to_string_lossy().into_owned(),
                    prompt: p,
                    pair: None,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

const DEFAULT_PROMPT: &str = "The quick brown fox jumps over the lazy dog";

/// A JSON file's value; `None` when there is no such file.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?,
    ))
}

fn load(source: &str, device: &Device, weights: WeightsMode) -> Result<LoadedModel> {
    let opts = LoadOptions {
        device: device.clone(),
        weights,
    };
    LoadedModel::load(source, &opts).with_context(|| format!("loading {source:?}"))
}

/// The CPU mode a device's run in `mode` is compared with: quantized with
/// the same blocks, everything else with f32.
fn reference_mode(mode: WeightsMode) -> WeightsMode {
    if mode.is_quantized() {
        WeightsMode::Quantized
    } else {
        WeightsMode::F32
    }
}

fn check_fixture(
    fixture: &Fixture,
    device: &Device,
    modes: &[WeightsMode],
    tally: &mut Tally,
) -> Result<()> {
    let name = &fixture.name;
    // Quantized weights exist only in GGUF files: a safetensors fixture has
    // no quantized form to check.
    let modes: Vec<WeightsMode> = modes
        .iter()
        .copied()
        .filter(|m| !m.is_quantized() || fixture.is_gguf())
        .collect();
    let mut want: Option<(WeightsMode, Vec<(String, Tensor)>)> = None;
    let mut ids = Vec::new();
    for &mode in &modes {
        let ref_mode = reference_mode(mode);
        if want.as_ref().map(|w| w.0) != Some(ref_mode) {
            let reference = load(&fixture.source, &Device::Cpu, ref_mode)?;
            ids = reference.tokenizer.encode(&fixture.prompt, None)?;
            want = Some((ref_mode, forward_all(&reference, &ids)?));
        }
        let want = &want.as_ref().expect("reference computed above").1;
        let m = load(&fixture.source, device, mode)?;
        let got = forward_all(&m, &ids)?;
        let mut worst = (0f32, String::new());
        for ((hook, a), (_, b)) in got.iter().zip(want) {
            let d = difference(a, b, mode)?;
            if d >= worst.0 || worst.1.is_empty() {
                worst = (d, hook.clone());
            }
        }
        let verdict = tally.judge(mode, worst.0);
        println!(
            "fixture {name:<16} {:<9} logits + {} hooks: worst {:.2e} ({})  {verdict}",
            mode.to_string(),
            got.len() - 1,
            worst.0,
            worst.1
        );
    }
    if let Some(pair) = &fixture.pair {
        compare_sweeps(
            name,
            &fixture.source,
            pair,
            Device::Cpu,
            device,
            &modes,
            tally,
        )?;
    }
    Ok(())
}

/// Logits (first) and every hook of one forward pass, as CPU f32 tensors.
fn forward_all(m: &LoadedModel, ids: &[u32]) -> Result<Vec<(String, Tensor)>> {
    let tokens = Tensor::new(ids, m.model.device())?.unsqueeze(0)?;
    let out = m.model.forward(
        Some(&tokens),
        &HookSpec::new().capture_all(),
        &ForwardOptions::default(),
    )?;
    let logits = out.logits.context("forward returned no logits")?;
    let mut all = vec![("logits".to_string(), to_cpu_f32(&logits)?)];
    let mut hooks: Vec<_> = out.cache.hooks().copied().collect();
    hooks.sort_by_key(|h| h.to_string());
    for h in hooks {
        let t = out.cache.get(h).context("captured hook vanished")?;
        all.push((h.to_string(), to_cpu_f32(t)?));
    }
    Ok(all)
}

fn to_cpu_f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
}

/// max |a - b|, scaled by max(1, max |b|) except in f32; infinite when one
/// side is finite where the other is not.
fn difference(a: &Tensor, b: &Tensor, mode: WeightsMode) -> Result<f32> {
    if a.dims() != b.dims() {
        bail!("shapes differ: {:?} against {:?}", a.dims(), b.dims());
    }
    let a = a.flatten_all()?.to_vec1::<f32>()?;
    let b = b.flatten_all()?.to_vec1::<f32>()?;
    Ok(scaled_max_diff(&a, &b, mode))
}

fn scaled_max_diff(a: &[f32], b: &[f32], mode: WeightsMode) -> f32 {
    let mut worst = 0f32;
    let mut scale = 1f32;
    for (&x, &y) in a.iter().zip(b) {
        match (x.is_finite(), y.is_finite()) {
            (true, true) => {
                worst = worst.max((x - y).abs());
                scale = scale.max(y.abs());
            }
            (false, false) => {}
            _ => return f32::INFINITY,
        }
    }
    if mode == WeightsMode::F32 {
        worst
    } else {
        worst / scale
    }
}

/// Runs resid_pre and head_out sweeps of `pair` on `device` in each mode,
/// and on `reference` in each mode's reference mode (f32, or quantized for
/// quantized); prints times and differences of `logit_diff`.
fn compare_sweeps(
    label: &str,
    source: &str,
    pair: &PromptPair,
    reference: Device,
    device: &Device,
    modes: &[WeightsMode],
    tally: &mut Tally,
) -> Result<()> {
    let mut want: Option<(WeightsMode, Vec<(f64, SweepResult)>)> = None;
    let mut pairs = Vec::new();
    for &mode in modes {
        let ref_mode = reference_mode(mode);
        if want.as_ref().map(|w| w.0) != Some(ref_mode) {
            let where_ref = format!("{} {ref_mode}", device_name(&reference));
            let ref_model = timed_load(label, source, &reference, ref_mode)?;
            pairs = prepare_pairs(&ref_model.tokenizer, std::slice::from_ref(pair), None)?;
            let mut runs = Vec::new();
            for target in SWEEP_TARGETS {
                let (secs, r) = timed_sweep(&ref_model, &pairs, target)?;
                println!(
                    "sweep   {label:<16} {where_ref:<14} {:<10} {:>5} cells  {secs:>8.3} s  (reference)",
                    target.name(),
                    r.metrics["logit_diff"].len(),
                );
                runs.push((secs, r));
            }
            want = Some((ref_mode, runs));
        }
        let want = &want.as_ref().expect("reference computed above").1;
        let m = timed_load(label, source, device, mode)?;
        for (target, (want_s, want_r)) in SWEEP_TARGETS.iter().zip(want) {
            let (secs, r) = timed_sweep(&m, &pairs, *target)?;
            let d = scaled_max_diff(
                &r.metrics["logit_diff"],
                &want_r.metrics["logit_diff"],
                mode,
            );
            let verdict = tally.judge(mode, d);
            println!(
                "sweep   {label:<16} {:<14} {:<10} {:>5} cells  {:>8.3} s  (reference {:.3} s)  logit_diff {:.2e}  {verdict}",
                format!("{} {mode}", device_name(device)),
                target.name(),
                r.metrics["logit_diff"].len(),
                secs,
                want_s,
                d
            );
        }
    }
    Ok(())
}

fn timed_load(
    label: &str,
    source: &str,
    device: &Device,
    mode: WeightsMode,
) -> Result<LoadedModel> {
    let t = Instant::now();
    let m = load(source, device, mode)?;
    println!(
        "load    {label:<16} {:<14} {:>8.3} s  ({} layers, d_model {})",
        format!("{} {mode}", device_name(device)),
        t.elapsed().as_secs_f64(),
        m.config().n_layers,
        m.config().d_model
    );
    Ok(m)
}

fn timed_sweep(
    m: &LoadedModel,
    pairs: &[patchbench::patching::PreparedPair],
    target: Target,
) -> Result<(f64, SweepResult)> {
    let t = Instant::now();
    let r = run_sweep(
        &m.model,
        pairs,
        &SweepSpec::new(target),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )?;
    Ok((t.elapsed().as_secs_f64(), r))
}

fn check_sweep_model(
    model: &str,
    device: &Device,
    modes: &[WeightsMode],
    cpu_reference: bool,
    tally: &mut Tally,
) -> Result<()> {
    if cpu_reference {
        return compare_sweeps(model, model, &ioi_pair(), Device::Cpu, device, modes, tally);
    }
    if modes.iter().any(|m| m.is_quantized()) {
        bail!(
            "--weights quantized is compared with the same blocks on the CPU: add --cpu-reference"
        );
    }
    // The f32 run on the device is the reference itself: time it once.
    let others: Vec<WeightsMode> = modes
        .iter()
        .copied()
        .filter(|&m| m != WeightsMode::F32)
        .collect();
    compare_sweeps(
        model,
        model,
        &ioi_pair(),
        device.clone(),
        device,
        &others,
        tally,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_absolute_in_f32_and_scaled_in_half_precision() {
        let want = [10.0, -20.0, 0.5];
        let got = [10.5, -20.0, 0.5];
        assert_eq!(scaled_max_diff(&got, &want, WeightsMode::F32), 0.5);
        assert_eq!(scaled_max_diff(&got, &want, WeightsMode::Bf16), 0.5 / 20.0);
        // Below a magnitude of 1 the scaled difference is the absolute one.
        assert_eq!(scaled_max_diff(&[0.25], &[0.5], WeightsMode::F16), 0.25);
    }

    #[test]
    fn a_value_finite_on_one_side_only_is_an_infinite_difference() {
        let nan = f32::NAN;
        assert_eq!(
            scaled_max_diff(&[nan, 1.0], &[nan, 1.0], WeightsMode::F32),
            0.0
        );
        assert_eq!(
            scaled_max_diff(&[nan, 1.0], &[0.0, 1.0], WeightsMode::F32),
            f32::INFINITY
        );
        assert_eq!(
            scaled_max_diff(&[1.0], &[f32::INFINITY], WeightsMode::Quantized),
            f32::INFINITY
        );
    }
}
