//! GGUF files of every supported architecture and tensor type against
//! transformers. The fixtures (tests/fixtures/gguf/, tools/make_gguf_fixtures.py)
//! are the tiny Hugging Face fixtures converted as llama.cpp's converter
//! does, with their matrices quantized; each reference is transformers'
//! forward of the Hugging Face model carrying the *dequantised* weights
//! (dequantised by gguf-py, not candle), so the comparison is tight although
//! the weights are quantized. The quantisation error itself is checked
//! against the original float model too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use common::*;
use patchbench::model::gguf::meta::Meta;
use patchbench::model::gguf::tensors::dequantised;
use patchbench::model::gguf_header::read_content;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookSpec, LoadedModel};

/// Measured: at most 1.3e-5 (the fixtures' logits are up to ~20 in size);
/// f32 summation order is the only difference left.
const TOL: f32 = 1e-4;

fn cpu() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        weights: Default::default(),
    }
}

fn gguf(name: &str) -> PathBuf {
    fixture("gguf").join(format!("{name}.gguf"))
}

fn logits(m: &LoadedModel, ids: &[u32]) -> Tensor {
    let tokens = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap()
        .logits
        .unwrap()
        .squeeze(0)
        .unwrap()
}

/// Loads `name`.gguf, checks its tokenisation of the prompt and its logits
/// against the dequantised reference; returns the model and the ids.
fn check(name: &str, family: &str) -> (LoadedModel, Vec<u32>) {
    let m = LoadedModel::load(gguf(name).to_str().unwrap(), &cpu())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(m.config().family, family, "{name}");
    let rj = &reference_json("gguf")[name];
    let ids = m
        .tokenizer
        .encode(rj["prompt"].as_str().unwrap(), None)
        .unwrap();
    assert_eq!(ids, ids_of(&rj["input_ids"]), "{name}: tokenisation");
    let got = logits(&m, &ids);
    let d = max_abs_diff(&got, &reference("gguf")[&format!("{name}.logits")]);
    eprintln!("{name}: max |logit - dequantised reference| = {d:.3e}");
    assert!(d <= TOL, "{name}: logits differ by {d}");
    (m, ids)
}

/// The GGUF model against the float model it was converted from: the
/// difference is the quantisation error transformers measured, no more.
fn check_against_hf(name: &str, family: &str, hf: &str) {
    let (g, ids) = check(name, family);
    let h = LoadedModel::load(fixture(hf).to_str().unwrap(), &cpu()).unwrap();
    let d = max_abs_diff(&logits(&g, &ids), &logits(&h, &ids));
    let measured = reference_json("gguf")[name]["max_abs_diff_dequantised_vs_f32_logits"]
        .as_f64()
        .unwrap() as f32;
    eprintln!("{name}: max |logit - {hf} f32 logit| = {d:.4} (transformers: {measured:.4})");
    assert!(
        (d - measured).abs() <= TOL,
        "{name} vs {hf}: {d}, transformers measured {measured}"
    );
    // Same shape of model on both paths.
    let (a, b) = (g.config(), h.config());
    assert_eq!(
        (
            a.n_layers,
            a.d_model,
            a.n_heads,
            a.n_kv_heads,
            a.d_head,
            a.d_mlp,
            a.d_vocab
        ),
        (
            b.n_layers,
            b.d_model,
            b.n_heads,
            b.n_kv_heads,
            b.d_head,
            b.d_mlp,
            b.d_vocab
        ),
        "{name}"
    );
    assert_eq!(
        (a.norm, a.act, a.gated_mlp, a.parallel_attn_mlp),
        (b.norm, b.act, b.gated_mlp, b.parallel_attn_mlp),
        "{name}"
    );
    assert!((a.norm_eps - b.norm_eps).abs() < 1e-12, "{name}");
}

#[test]
fn llama_matches() {
    check_against_hf("llama", "llama", "llama-tiny");
}

#[test]
fn llama31_rope_freqs_match() {
    check_against_hf("llama31", "llama", "llama3-tiny");
}

#[test]
fn qwen2_with_biases_matches() {
    check_against_hf("qwen2", "qwen2", "qwen2-tiny");
}

#[test]
fn gpt2_matches() {
    check_against_hf("gpt2", "gpt2", "gpt2-tiny");
}

#[test]
fn gptneox_parallel_and_partial_rotary_match() {
    check_against_hf("gptneox", "gpt_neox", "pythia-tiny");
    check_against_hf("gptneox-seq", "gpt_neox", "pythia-seq-tiny");
}

/// The largest difference between two tensors of the same shape; equal
/// entries (masked `-inf` attention scores included) count as 0.
fn max_diff_masked(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    flat(a)
        .iter()
        .zip(flat(b))
        .map(|(&x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// A Gemma GGUF fixture (every tensor F32, converted as llama.cpp converts
/// Gemma) against the Hugging Face directory it came from: the same config
/// (the converter folded Gemma's `+1` into the norm weights), the same
/// tokens through the rebuilt SentencePiece tokenizer, and the same logits
/// and activations at every hook within 1e-5.
fn check_gemma(name: &str, family: &str, hf: &str) {
    let (g, ids) = check(name, family);
    let h = LoadedModel::load(fixture(hf).to_str().unwrap(), &cpu()).unwrap();
    let (a, mut b) = (g.config().clone(), h.config().clone());
    assert!((a.norm_eps - b.norm_eps).abs() < 1e-12, "{name}");
    assert_eq!(b.norm_weight_offset, 1.0, "{hf}");
    b.family = a.family.clone();
    b.norm_weight_offset = 0.0;
    b.norm_eps = a.norm_eps;
    assert_eq!(a, b, "{name}: config differs from {hf}");
    assert_eq!(
        h.tokenizer.encode(&g.tokenizer.decode(&ids), None).unwrap(),
        ids,
        "{name}: the GGUF tokenizer and {hf}'s tokenizer.json differ"
    );
    let spec = HookSpec::new().capture_all();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let run = |m: &LoadedModel| {
        m.model
            .forward(Some(&tokens), &spec, &ForwardOptions::default())
            .unwrap()
    };
    let (og, oh) = (run(&g), run(&h));
    let mut worst = max_abs_diff(og.logits.as_ref().unwrap(), oh.logits.as_ref().unwrap());
    let mut hooks: Vec<_> = oh.cache.hooks().copied().collect();
    hooks.sort_by_key(|k| k.to_string());
    assert!(
        hooks.len() >= 10 * a.n_layers,
        "{name}: {} hooks",
        hooks.len()
    );
    assert_eq!(og.cache.len(), hooks.len(), "{name}");
    for k in &hooks {
        let d = max_diff_masked(og.cache.get(*k).unwrap(), oh.cache.get(*k).unwrap());
        assert!(d <= 1e-5, "{name}: {k} differs from {hf} by {d}");
        worst = worst.max(d);
    }
    eprintln!(
        "{name}: logits and {} hooks within {worst:.1e} of {hf}",
        hooks.len()
    );
    assert!(worst <= 1e-5, "{name}: logits differ from {hf} by {worst}");
}

#[test]
fn gemma_matches_its_hugging_face_directory() {
    check_gemma("gemma", "gemma", "gemma-tiny");
}

#[test]
fn gemma2_matches_its_hugging_face_directory() {
    check_gemma("gemma2", "gemma2", "gemma2-tiny");
}

#[test]
fn gemma3_matches_its_hugging_face_directory() {
    check_gemma("gemma3", "gemma3", "gemma3-tiny");
}

/// Gemma in f16 gives NaN logits (Gemma 3 270M's activations overflow it),
/// so `--weights f16` is refused for every Gemma, naming bf16.
#[test]
fn gemma_refuses_f16_naming_bf16() {
    for name in ["gemma", "gemma3"] {
        let opts = LoadOptions::cpu_with(patchbench::model::WeightsMode::F16);
        let e = match LoadedModel::load(gguf(name).to_str().unwrap(), &opts) {
            Ok(_) => panic!("{name} loaded in f16"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("f16") && e.contains("--weights bf16"), "{e}");
    }
}

#[test]
fn kquant_model_with_sentencepiece_matches() {
    let (m, ids) = check("kquant", "llama");
    assert_eq!(ids[0], 1, "SentencePiece vocabularies add BOS by default");
    assert_eq!(m.tokenizer.vocab_size(), 480);
}

/// Every tensor type candle loads from a file, one random tensor each,
/// against gguf-py's dequantisation.
#[test]
fn every_tensor_type_dequantises_like_gguf_py() {
    let path = gguf("blocks");
    let file = std::fs::File::open(&path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut reader = std::io::BufReader::new(file);
    let content = read_content(&mut reader, size).unwrap();
    let m = Meta {
        content: &content,
        path: &path,
    };
    let refs = reference("gguf");
    let types = reference_json("gguf")["blocks"]["tensor_types"].clone();
    let types = types.as_object().unwrap();
    assert_eq!(types.len(), 13);
    for (name, ty) in types {
        let got = dequantised(&m, &mut reader, name, &Device::Cpu).unwrap();
        let d = max_abs_diff(&got, &refs[name.as_str()]);
        eprintln!("{ty}: max |candle - gguf-py| = {d:e}");
        assert!(d <= 1e-7, "{ty}: dequantised values differ by {d}");
        let dtype = format!("{:?}", content.tensor_infos[name.as_str()].ggml_dtype);
        let dtype = match dtype.strip_suffix('K') {
            Some(q) => format!("{q}_K"),
            None => dtype,
        };
        assert_eq!(dtype, ty.as_str().unwrap(), "{name}");
    }
}

fn load_err(path: &Path) -> String {
    match LoadedModel::load(path.to_str().unwrap(), &cpu()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A file of an architecture patchbench does not map is refused naming it
/// and the ones it does.
#[test]
fn unsupported_architecture_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf("gptneox")).unwrap();
    // Same length, so the header stays valid: "gptneox" -> "mamba2x".
    let pos = bytes
        .windows(7)
        .position(|w| w == b"gptneox")
        .expect("the architecture string");
    let mut patched = bytes.clone();
    patched[pos..pos + 7].copy_from_slice(b"mamba2x");
    let path = tmp.path().join("m.gguf");
    std::fs::write(&path, patched).unwrap();
    let e = load_err(&path);
    assert!(e.contains("\"mamba2x\""), "{e}");
    for arch in [
        "llama", "qwen2", "gemma", "gemma2", "gemma3", "gpt2", "gptneox",
    ] {
        assert!(e.contains(arch), "{e}");
    }
}

/// A tensor type candle cannot dequantise (an i-quant) is refused naming
/// the tensor and the type.
#[test]
fn unsupported_tensor_type_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf("blocks")).unwrap();
    let name = b"blocks.Q4_0";
    let pos = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the tensor name");
    // name, u32 n_dims (2), two u64 dims, then the u32 type.
    let ty = pos + name.len() + 4 + 16;
    assert_eq!(u32::from_le_bytes(bytes[ty..ty + 4].try_into().unwrap()), 2);
    let mut patched = bytes.clone();
    patched[ty..ty + 4].copy_from_slice(&16u32.to_le_bytes()); // IQ2_XXS
    let path = tmp.path().join("iq.gguf");
    std::fs::write(&path, patched).unwrap();
    let e = load_err(&path);
    assert!(e.contains("blocks.Q4_0") && e.contains("IQ2_XXS"), "{e}");
    assert!(
        e.contains("Q6_K") && e.contains("BF16"),
        "lists the supported types: {e}"
    );
}

/// A resid_pre sweep on a GGUF model: patching the one changed token's
/// residual at layer 0 restores the clean run exactly; patching any other
/// position there changes nothing.
#[test]
fn sweep_runs_on_a_gguf_model() {
    let model = gguf("gptneox");
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args([
            "sweep",
            "--model",
            model.to_str().unwrap(),
            "--clean",
            "When Mary and John went to the store, John gave a drink to",
            "--corrupted",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answer",
            " Mary",
            "--wrong",
            " John",
            "--target",
            "resid_pre",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clean = ids_of(&v["clean_tokens"]["ids"]);
    let corrupted = ids_of(&v["corrupted_tokens"]["ids"]);
    let changed: Vec<usize> = (0..clean.len())
        .filter(|&i| clean[i] != corrupted[i])
        .collect();
    assert_eq!(changed.len(), 1, "{clean:?} vs {corrupted:?}");
    let layer0 = v["metrics"]["logit_diff_normalized"][0].as_array().unwrap();
    for (pos, cell) in layer0.iter().enumerate() {
        let x = cell.as_f64().unwrap();
        let want = if pos == changed[0] { 1.0 } else { 0.0 };
        assert!((x - want).abs() < 1e-4, "layer 0, position {pos}: {x}");
    }
}
