//! The forward pass against Hugging Face transformers: logits at every
//! position and hooked activations of tiny random fixtures, and the real
//! SmolLM2-135M GGUF. References come from tools/make_fixtures.py and
//! tools/smollm2_reference.py.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookPoint, HookSpec, LoadedModel};

fn cpu() -> LoadOptions {
    LoadOptions::cpu()
}

/// Loads a fixture, checks tokenisation, runs it capturing the reference
/// hooks, and compares everything within `tol`.
fn check_fixture(name: &str, source: &str, tol: f32) {
    let m = LoadedModel::load(source, &cpu()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let rj = reference_json(name);
    let want_ids = ids_of(&rj["input_ids"]);
    let ids = m
        .tokenizer
        .encode(rj["prompt"].as_str().unwrap(), None)
        .unwrap();
    assert_eq!(
        ids, want_ids,
        "{name}: tokenisation differs from transformers"
    );
    let refs = reference(name);
    let mut spec = HookSpec::new();
    for k in refs.keys().filter(|k| *k != "logits") {
        spec = spec.capture(k.parse::<HookPoint>().unwrap());
    }
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(Some(&tokens), &spec, &ForwardOptions::default())
        .unwrap();
    let logits = out.logits.unwrap().squeeze(0).unwrap();
    let logit_diff = max_abs_diff(&logits, &refs["logits"]);
    assert!(logit_diff <= tol, "{name}: logits differ by {logit_diff}");
    let (mut checked, mut worst) = (0, 0.0f32);
    for (k, want) in &refs {
        if k == "logits" {
            continue;
        }
        let got = out
            .cache
            .get(k.parse().unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
        let d = max_abs_diff(&got, want);
        assert!(d <= tol, "{name}: {k} differs by {d}");
        worst = worst.max(d);
        checked += 1;
    }
    assert!(checked >= 8, "{name}: only {checked} activations compared");
    eprintln!("{name}: max |diff| logits {logit_diff:.2e}, {checked} activations {worst:.2e}");
}

#[test]
fn gpt2_matches_transformers() {
    check_fixture("gpt2-tiny", fixture("gpt2-tiny").to_str().unwrap(), 1e-4);
}

#[test]
fn llama_gqa_matches_transformers() {
    check_fixture("llama-tiny", fixture("llama-tiny").to_str().unwrap(), 1e-4);
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check_fixture(
        "llama3-tiny",
        fixture("llama3-tiny").to_str().unwrap(),
        1e-4,
    );
}

#[test]
fn qwen2_biases_match_transformers() {
    check_fixture("qwen2-tiny", fixture("qwen2-tiny").to_str().unwrap(), 1e-4);
}

#[test]
fn pythia_parallel_partial_rotary_matches_transformers() {
    check_fixture(
        "pythia-tiny",
        fixture("pythia-tiny").to_str().unwrap(),
        1e-4,
    );
}

#[test]
fn gpt_neox_sequential_residual_matches_transformers() {
    check_fixture(
        "pythia-seq-tiny",
        fixture("pythia-seq-tiny").to_str().unwrap(),
        1e-4,
    );
}

#[test]
fn gguf_fixture_matches_transformers_gguf_loader() {
    let path = fixture("llama-tiny-gguf").join("model.gguf");
    let m = LoadedModel::load(path.to_str().unwrap(), &cpu()).unwrap();
    let rj = reference_json("llama-tiny-gguf");
    let ids = m
        .tokenizer
        .encode(rj["prompt"].as_str().unwrap(), None)
        .unwrap();
    assert_eq!(ids, ids_of(&rj["input_ids"]));
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap();
    let d = max_abs_diff(
        &out.logits.unwrap().squeeze(0).unwrap(),
        &reference("llama-tiny-gguf")["logits"],
    );
    assert!(d <= 1e-4, "gguf logits differ by {d}");
}

#[test]
fn last_position_only_equals_full_logits() {
    // pythia-tiny covers the parallel attention + MLP path of the final block.
    for name in ["llama-tiny", "pythia-tiny"] {
        last_position_only_equals_full(name);
    }
}

fn last_position_only_equals_full(name: &str) {
    let m = LoadedModel::load(fixture(name).to_str().unwrap(), &cpu()).unwrap();
    let ids = m.tokenizer.encode("When Mary and John went", None).unwrap();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = m
        .model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap();
    let last = m
        .model
        .forward(
            Some(&tokens),
            &HookSpec::new(),
            &ForwardOptions {
                last_pos_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    let full = full.logits.unwrap().squeeze(0).unwrap();
    let want = full
        .narrow(0, ids.len() - 1, 1)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let d = max_abs_diff(&last.logits.unwrap().squeeze(0).unwrap(), &want);
    assert!(d < 1e-5, "{name}: last-position logits differ by {d}");
}

#[test]
fn smollm2_gguf_says_paris_and_matches_transformers() {
    let path = smollm2_gguf();
    let m = LoadedModel::load(path.to_str().unwrap(), &cpu()).unwrap();
    let rj = reference_json("smollm2");
    let refs = reference("smollm2");
    let eiffel = &rj["prompts"]["eiffel"];
    let ids = m
        .tokenizer
        .encode(eiffel["text"].as_str().unwrap(), None)
        .unwrap();
    assert_eq!(
        ids,
        ids_of(&eiffel["input_ids"]),
        "SmolLM2 tokenisation differs from transformers"
    );
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap();
    let logits = out.logits.unwrap().squeeze(0).unwrap();
    let last = logits.get(ids.len() - 1).unwrap();
    let top = last.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(m.tokenizer.token_str(top), " Paris");
    let key = if refs.contains_key("logits_eiffel") {
        "logits_eiffel"
    } else {
        "last_logits_eiffel"
    };
    let want = &refs[key];
    let got = if want.rank() == 2 { logits } else { last };
    let d = max_abs_diff(&got, want);
    assert!(d <= 1e-3, "SmolLM2 logits differ from transformers by {d}");
}
