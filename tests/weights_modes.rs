//! `--weights f32|bf16|f16|quantized`: every mode loads every fixture
//! family, half precision stays within the tolerances documented in the
//! README (logits against f32, top-1 and the resid_pre sweep's argmax cell
//! agree), quantized GGUF matrices give the dequantised-f32 forward within
//! a measured tolerance, and gradient methods refuse quantized weights.
//!
//! Run with `--nocapture` to see the measured differences.

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::*;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookPoint, HookSpec, LoadedModel, WeightsMode};
use patchbench::patching::{
    run_sweep, EngineOptions, Method, PreparedPair, SweepResult, SweepSpec, Target,
};

/// Fixture families and their documented half-precision logit tolerances
/// (max |logit − f32 logit| over every position; README "Precision").
const FAMILIES: &[(&str, &str, f32, f32)] = &[
    // (fixture, family, bf16, f16)
    ("gpt2-tiny", "gpt2", 0.08, 0.015),
    ("pythia-tiny", "gpt_neox", 0.08, 0.015),
    ("llama-tiny", "llama", 0.08, 0.015),
    ("llama3-tiny", "llama (Llama 3 rope)", 0.08, 0.015),
    ("qwen2-tiny", "qwen2", 0.08, 0.015),
    ("llama-tiny-gguf", "llama (GGUF)", 0.08, 0.015),
];

fn source(fixture_name: &str) -> String {
    let p = fixture(fixture_name);
    let p = if fixture_name.ends_with("-gguf") {
        p.join("model.gguf")
    } else {
        p
    };
    p.to_str().unwrap().to_string()
}

fn load(src: &str, mode: WeightsMode) -> LoadedModel {
    LoadedModel::load(src, &LoadOptions::cpu_with(mode))
        .unwrap_or_else(|e| panic!("{src} with --weights {mode}: {e}"))
}

/// Logits `[pos, vocab]` in f32, and the hook captured at `hook`.
fn run(m: &LoadedModel, ids: &[u32], hook: HookPoint) -> (Tensor, Tensor) {
    let tokens = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(
            Some(&tokens),
            &HookSpec::new().capture(hook),
            &ForwardOptions::default(),
        )
        .unwrap();
    let logits = out.logits.unwrap().squeeze(0).unwrap();
    let act = out.cache.get(hook).unwrap().clone();
    (
        logits.to_dtype(DType::F32).unwrap(),
        act.to_dtype(DType::F32).unwrap(),
    )
}

fn last_row(logits: &Tensor) -> Vec<f32> {
    let n = logits.dim(0).unwrap();
    logits.get(n - 1).unwrap().to_vec1().unwrap()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

/// A pair over the fixture prompt: position 2 corrupted, the f32 model's
/// top two tokens as answer and wrong.
fn pair(ids: &[u32], top: &[f32]) -> PreparedPair {
    let answer = argmax(top) as u32;
    let mut rest = top.to_vec();
    rest[answer as usize] = f32::NEG_INFINITY;
    let wrong = argmax(&rest) as u32;
    let mut corrupted = ids.to_vec();
    corrupted[2] = ids[3];
    PreparedPair {
        clean: ids.to_vec(),
        corrupted,
        answer,
        wrong,
        sets: Default::default(),
    }
}

fn sweep(m: &LoadedModel, p: &PreparedPair, method: Method) -> Result<SweepResult, String> {
    run_sweep(
        &m.model,
        std::slice::from_ref(p),
        &SweepSpec::new(Target::ResidPre),
        &EngineOptions {
            method,
            ..Default::default()
        },
        None,
        &mut |_| {},
    )
    .map_err(|e| e.to_string())
}

/// The cell with the largest logit difference.
fn argmax_cell(r: &SweepResult) -> usize {
    let v: Vec<f32> = r.metrics["logit_diff"]
        .iter()
        .map(|x| if x.is_finite() { *x } else { f32::NEG_INFINITY })
        .collect();
    argmax(&v)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// How far below the half-precision maximum the f32 argmax cell of the
/// resid_pre sweep may sit (logit difference).
const SWEEP_TIE: f32 = 0.05;

#[test]
fn half_precision_matches_f32_within_the_documented_tolerance() {
    for &(name, family, tol_bf16, tol_f16) in FAMILIES {
        let src = source(name);
        let ids = ids_of(&reference_json(name)["input_ids"]);
        let f32m = load(&src, WeightsMode::F32);
        let (want, want_resid) = run(&f32m, &ids, HookPoint::ResidPost(0));
        let top = last_row(&want);
        let p = pair(&ids, &top);
        let want_sweep = sweep(&f32m, &p, Method::Fast).unwrap();
        for (mode, tol) in [(WeightsMode::Bf16, tol_bf16), (WeightsMode::F16, tol_f16)] {
            let m = load(&src, mode);
            assert_eq!(m.model.dtype(), mode.dtype(), "{name} {mode}");
            let (got, got_resid) = run(&m, &ids, HookPoint::ResidPost(0));
            let d = max_abs_diff(&got, &want);
            let dr = max_abs_diff(&got_resid, &want_resid);
            let got_top = last_row(&got);
            let r = sweep(&m, &p, Method::Fast).unwrap();
            let ld = max_diff(&r.metrics["logit_diff"], &want_sweep.metrics["logit_diff"]);
            let norm = &r.metrics["logit_diff"];
            eprintln!(
                "{name} ({family}) {mode}: max |logit diff| {d:.2e} (tolerance {tol:.0e}), \
                 resid_post.0 {dr:.2e}, sweep logit_diff {ld:.2e}, top-1 {} vs {}, argmax cell {} vs {} \
                 (logit_diff {:.4} vs {:.4})",
                argmax(&got_top),
                argmax(&top),
                argmax_cell(&r),
                argmax_cell(&want_sweep),
                norm[argmax_cell(&r)],
                norm[argmax_cell(&want_sweep)],
            );
            assert!(
                d <= tol,
                "{name} {mode}: logits differ from f32 by {d} > {tol}"
            );
            assert_eq!(
                argmax(&got_top),
                argmax(&top),
                "{name} {mode}: top-1 differs"
            );
            // The f32 argmax cell is the half-precision argmax up to
            // near-ties (tiny random fixtures have cells within 1e-2).
            let ld_cells = &r.metrics["logit_diff"];
            let gap = ld_cells[argmax_cell(&r)] - ld_cells[argmax_cell(&want_sweep)];
            assert!(
                gap <= SWEEP_TIE,
                "{name} {mode}: the f32 argmax cell is {gap} below the {mode} maximum"
            );
            // Metrics are f32 whatever the weights.
            assert!(r.metrics["logit_diff"].iter().all(|v| v.is_finite()));
        }
    }
}

/// Writes `model.gguf` of the tiny GGUF fixture with its projection
/// matrices quantized to `dtype`.
fn quantized_fixture(dir: &Path, dtype: GgmlDType) -> PathBuf {
    let src = fixture("llama-tiny-gguf").join("model.gguf");
    let mut f = std::fs::File::open(&src).unwrap();
    let content = Content::read(&mut f).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut f, name, &Device::Cpu).unwrap();
        let is_matrix = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_"]
            .iter()
            .any(|p| name.contains(p));
        let q = if is_matrix {
            QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), dtype).unwrap()
        } else {
            q
        };
        tensors.push((name.clone(), q));
    }
    let path = dir.join(format!("model-{dtype:?}.gguf"));
    let mut out = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    gguf_file::write(&mut out, &meta, &ts).unwrap();
    path
}

/// Measured on the tiny fixture (README "Precision"; logits up to about
/// 10): candle quantizes the activations to 8 bits per block (Q8_0) for
/// the integer dot products, so the quantized forward differs from the
/// dequantised one by that rounding, whatever the weights' type.
const QUANTIZED_TOL: &[(GgmlDType, f32)] = &[(GgmlDType::Q8_0, 0.15), (GgmlDType::Q4_0, 0.15)];

#[test]
fn quantized_gguf_matches_the_dequantised_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "llama-tiny-gguf";
    let ids = ids_of(&reference_json(name)["input_ids"]);
    for &(dtype, tol) in QUANTIZED_TOL {
        let path = quantized_fixture(tmp.path(), dtype);
        let src = path.to_str().unwrap();
        let deq = load(src, WeightsMode::F32);
        let q = load(src, WeightsMode::Quantized);
        assert!(q.model.is_quantized() && !deq.model.is_quantized());
        assert_eq!(q.model.dtype(), DType::F32);
        // hook_q checks the Q row permutation done on quantized blocks.
        let (want, want_q) = run(&deq, &ids, HookPoint::Q(1));
        let (got, got_q) = run(&q, &ids, HookPoint::Q(1));
        let d = max_abs_diff(&got, &want);
        let dq = max_abs_diff(&got_q, &want_q);
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("{name} {dtype:?}: quantized vs dequantised max |logit diff| {d:.2e} (max |logit| {scale:.2}), hook_q {dq:.2e} (tolerance {tol:.0e})");
        assert!(d <= tol, "{dtype:?}: logits differ by {d} > {tol}");
        assert!(
            dq <= tol,
            "{dtype:?}: blocks.1.attn.hook_q differs by {dq} > {tol}"
        );
        assert_eq!(argmax(&last_row(&got)), argmax(&last_row(&want)));
        assert_ne!(q.fingerprint, deq.fingerprint);
    }
}

/// Undoing llama.cpp's Q/K permutation on quantized rows is exact: it
/// equals the float permutation of the dequantised matrix.
#[test]
fn quantized_row_permutation_is_exact() {
    use patchbench::model::quantized::unpermute_heads;
    let w = Tensor::randn(0f32, 1.0, (4 * 8, 64), &Device::Cpu).unwrap();
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1, GgmlDType::Q4K] {
        let w = if dtype == GgmlDType::Q4K {
            Tensor::randn(0f32, 1.0, (4 * 8, 256), &Device::Cpu).unwrap()
        } else {
            w.clone()
        };
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let (out, inp) = deq.dims2().unwrap();
        let want = deq
            .reshape((4, 4, 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((out, inp))
            .unwrap();
        let got = unpermute_heads(&q, 4)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0, "{dtype:?}");
    }
}

#[test]
fn real_smollm2_quantized_agrees_with_f32() {
    let path = smollm2_gguf();
    let src = path.to_str().unwrap();
    let f32m = load(src, WeightsMode::F32);
    let q = load(src, WeightsMode::Quantized);
    assert!(q.model.is_quantized());
    let ids = f32m
        .tokenizer
        .encode("The Eiffel Tower is located in the city of", None)
        .unwrap();
    let (want, _) = run(&f32m, &ids, HookPoint::ResidPre(0));
    let (got, _) = run(&q, &ids, HookPoint::ResidPre(0));
    let d = max_abs_diff(&got, &want);
    let paris = f32m.tokenizer.encode(" Paris", Some(false)).unwrap()[0] as usize;
    eprintln!("SmolLM2 Q4_1: quantized vs dequantised max |logit diff| {d:.2e}");
    assert_eq!(argmax(&last_row(&want)), paris);
    assert_eq!(argmax(&last_row(&got)), paris);
    // Measured 1.11 over every position and the 49152-token vocabulary
    // (logits span about 30); README "Precision".
    assert!(d <= 2.0, "SmolLM2: logits differ by {d}");
}

#[test]
fn gradient_methods_refuse_quantized_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let path = quantized_fixture(tmp.path(), GgmlDType::Q8_0);
    let q = load(path.to_str().unwrap(), WeightsMode::Quantized);
    let ids = ids_of(&reference_json("llama-tiny-gguf")["input_ids"]);
    let (logits, _) = run(&q, &ids, HookPoint::ResidPre(0));
    let p = pair(&ids, &last_row(&logits));
    let err = sweep(&q, &p, Method::Attribution).unwrap_err();
    assert!(
        err.contains("attribution patching needs gradients") && err.contains("--weights f32"),
        "{err}"
    );
    // Exact patching runs.
    assert!(sweep(&q, &p, Method::Fast).is_ok());
    // And from the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args([
            "sweep",
            "-m",
            path.to_str().unwrap(),
            "--weights",
            "quantized",
        ])
        .args([
            "--clean",
            "When Mary and John went",
            "--corrupted",
            "When Mary and Mary went",
        ])
        .args([
            "--answer",
            " to",
            "--wrong",
            " the",
            "--target",
            "resid_pre",
        ])
        .args(["--method", "attribution"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("needs gradients") && stderr.contains("--weights f32"),
        "{stderr}"
    );
}

#[test]
fn quantized_refuses_safetensors_and_presets_quantize() {
    let err = LoadedModel::load(
        &source("gpt2-tiny"),
        &LoadOptions::cpu_with(WeightsMode::Quantized),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--weights bf16") && err.contains(".gguf"),
        "{err}"
    );
    // A random preset quantizes each matrix to Q4_0 from the same draws as
    // its f32 twin.
    let f = load("random:llama-tiny", WeightsMode::F32);
    let q = load("random:llama-tiny", WeightsMode::Quantized);
    let b = load("random:llama-tiny", WeightsMode::Bf16);
    assert!(q.model.is_quantized());
    assert_eq!(b.model.dtype(), DType::BF16);
    let ids: Vec<u32> = (1..12).collect();
    let (want, _) = run(&f, &ids, HookPoint::ResidPre(0));
    // Q4_0 rounds the weights themselves (measured 8e-2).
    for (m, tol) in [(&q, 0.25), (&b, 0.05)] {
        let (got, _) = run(m, &ids, HookPoint::ResidPre(0));
        let d = max_abs_diff(&got, &want);
        eprintln!(
            "random:llama-tiny {}: max |logit diff| vs f32 {d:.2e}",
            if m.model.is_quantized() {
                "Q4_0"
            } else {
                "bf16"
            }
        );
        assert!(d <= tol, "{d}");
    }
}
