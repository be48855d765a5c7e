//! Every model source: local directory, sharded directory, the Hugging Face
//! cache layout, GGUF, random presets, and the errors for pickles, missing
//! files and corrupt weights.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookSpec, LoadedModel, ModelSource};

fn cpu() -> LoadOptions {
    LoadOptions::cpu()
}

fn load(s: &str) -> Result<LoadedModel, String> {
    LoadedModel::load(s, &cpu()).map_err(|e| e.to_string())
}

fn last_logits(m: &LoadedModel, text: &str) -> Tensor {
    let ids = m.tokenizer.encode(text, None).unwrap();
    let t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let o = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    m.model
        .forward(Some(&t), &HookSpec::new(), &o)
        .unwrap()
        .logits
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if !skip.contains(&name.as_str()) {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn sharded_directory_equals_single_file() {
    let src = fixture("llama-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    copy_dir(&src, &dir, &["model.safetensors"]);
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let tensors: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), all[*n].clone()))
            .collect();
        candle_core::safetensors::save(&tensors, dir.join(shard)).unwrap();
        for n in part.iter() {
            weight_map.insert((*n).clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let single = load(src.to_str().unwrap()).unwrap();
    let sharded = load(dir.to_str().unwrap()).unwrap();
    let text = "When Mary and John went to the store";
    assert_eq!(
        max_abs_diff(&last_logits(&single, text), &last_logits(&sharded, text)),
        0.0
    );
    assert_eq!(single.fingerprint, sharded.fingerprint);

    // A shard named in the index but absent is reported by name.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = load(dir.to_str().unwrap()).unwrap_err();
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn hub_ids_resolve_from_the_hf_cache_and_fail_clearly_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let repo = hub.join("models--pb-test--gpt2-tiny");
    let snap = repo.join("snapshots").join("0123abcd");
    copy_dir(&fixture("gpt2-tiny"), &snap, &[]);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    // The only test in this binary that touches these variables.
    std::env::set_var("HF_HOME", tmp.path());
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let m = load("pb-test/gpt2-tiny").unwrap();
    let direct = load(fixture("gpt2-tiny").to_str().unwrap()).unwrap();
    assert_eq!(m.fingerprint, direct.fingerprint);
    assert_eq!(m.source, "pb-test/gpt2-tiny");
    let listed = patchbench::model::hf::cached_models(&hub);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "pb-test/gpt2-tiny");

    let e = load("pb-test/not-there").unwrap_err();
    assert!(
        e.contains("not in the Hugging Face cache") && e.contains(&hub.display().to_string()),
        "{e}"
    );
    assert!(
        e.contains("huggingface-cli download pb-test/not-there"),
        "{e}"
    );
}

#[test]
fn gguf_and_random_sources_load() {
    let g = load(
        fixture("llama-tiny-gguf")
            .join("model.gguf")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(g.config().n_kv_heads, 2);
    for preset in ["random:gpt2-tiny", "random:llama-tiny"] {
        let a = load(preset).unwrap();
        let b = load(preset).unwrap();
        let c = load(&format!("{preset}@7")).unwrap();
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "{preset} is not deterministic"
        );
        assert_ne!(
            a.fingerprint, c.fingerprint,
            "{preset}: the seed changes nothing"
        );
        let l = last_logits(&a, "The capital of France is");
        assert_eq!(l.dims(), &[1, a.config().d_vocab]);
    }
    let e = load("random:gpt5").unwrap_err();
    assert!(
        e.contains("gpt2-small") && e.contains("smollm2-135m"),
        "{e}"
    );
}

#[test]
fn pickle_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["pytorch_model.bin", "model.pt", "weights.pth"] {
        let p = tmp.path().join(name);
        std::fs::write(&p, b"\x80\x02}q\x00.").unwrap();
        let e = load(p.to_str().unwrap()).unwrap_err();
        assert!(e.contains("pickle") && e.contains("safetensors"), "{e}");
    }
    // A directory whose only weights are a pickle.
    let dir = tmp.path().join("old");
    copy_dir(&fixture("gpt2-tiny"), &dir, &["model.safetensors"]);
    std::fs::write(dir.join("pytorch_model.bin"), b"\x80\x02").unwrap();
    let e = load(dir.to_str().unwrap()).unwrap_err();
    assert!(
        e.contains("pickle") && e.contains("pytorch_model.bin"),
        "{e}"
    );
}

#[test]
fn missing_and_corrupt_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load(tmp.path().join("nope.gguf").to_str().unwrap()).unwrap_err();
    assert!(e.contains("no such file"), "{e}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = load(empty.to_str().unwrap()).unwrap_err();
    assert!(e.contains("config.json"), "{e}");

    let no_weights = tmp.path().join("no-weights");
    copy_dir(&fixture("gpt2-tiny"), &no_weights, &["model.safetensors"]);
    let e = load(no_weights.to_str().unwrap()).unwrap_err();
    assert!(e.contains("model.safetensors"), "{e}");

    let no_tok = tmp.path().join("no-tokenizer");
    copy_dir(&fixture("gpt2-tiny"), &no_tok, &["tokenizer.json"]);
    let e = load(no_tok.to_str().unwrap()).unwrap_err();
    assert!(e.contains("tokenizer.json"), "{e}");

    let corrupt = tmp.path().join("corrupt");
    copy_dir(&fixture("gpt2-tiny"), &corrupt, &[]);
    let bytes = std::fs::read(corrupt.join("model.safetensors")).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load(corrupt.to_str().unwrap()).unwrap_err();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    let bad_gguf = tmp.path().join("bad.gguf");
    std::fs::write(&bad_gguf, b"GGUF but not really").unwrap();
    let e = load(bad_gguf.to_str().unwrap()).unwrap_err();
    assert!(e.contains("bad.gguf"), "{e}");

    let bad_cfg = tmp.path().join("bad-config");
    copy_dir(&fixture("gpt2-tiny"), &bad_cfg, &[]);
    std::fs::write(bad_cfg.join("config.json"), r#"{"model_type": "t5"}"#).unwrap();
    let e = load(bad_cfg.to_str().unwrap()).unwrap_err();
    assert!(e.contains("\"t5\"") && e.contains("not supported"), "{e}");
}

#[test]
fn gpt_neox_buffers_are_dropped_and_bad_tensors_named() {
    let src = fixture("pythia-tiny");
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let with = |name: &str, edit: &dyn Fn(&mut HashMap<String, Tensor>)| {
        let dir = tmp.path().join(name);
        copy_dir(&src, &dir, &["model.safetensors"]);
        let mut tensors = all.clone();
        edit(&mut tensors);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        load(dir.to_str().unwrap())
    };

    // Older exports save the causal mask and rotary buffers; they carry nothing.
    let old = with("old-export", &|t| {
        let l0 = "gpt_neox.layers.0.attention";
        let mask = Tensor::ones((1, 1, 64, 64), candle_core::DType::U8, &Device::Cpu).unwrap();
        t.insert(format!("{l0}.bias"), mask);
        t.insert(
            format!("{l0}.masked_bias"),
            Tensor::new(-1e9f32, &Device::Cpu).unwrap(),
        );
        let inv_freq = Tensor::new(&[1.0f32, 0.01], &Device::Cpu).unwrap();
        t.insert(format!("{l0}.rotary_emb.inv_freq"), inv_freq);
    })
    .unwrap();
    let plain = load(src.to_str().unwrap()).unwrap();
    let text = "When Mary and John went to the store";
    assert_eq!(
        max_abs_diff(&last_logits(&old, text), &last_logits(&plain, text)),
        0.0
    );

    let qkv = "gpt_neox.layers.1.attention.query_key_value.weight";
    let e = with("missing", &|t| {
        t.remove(qkv);
    })
    .unwrap_err();
    assert!(e.contains("missing weight") && e.contains(qkv), "{e}");

    let extra = "gpt_neox.layers.0.attention.q_norm.weight";
    let e = with("unknown", &|t| {
        t.insert(
            extra.into(),
            Tensor::ones(16, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    })
    .unwrap_err();
    assert!(e.contains("not used") && e.contains(extra), "{e}");
}

#[test]
fn source_strings_parse() {
    assert_eq!(ModelSource::parse("demo").unwrap(), ModelSource::Demo);
    assert_eq!(
        ModelSource::parse("random:gpt2-small@3").unwrap(),
        ModelSource::Random {
            preset: "gpt2-small".into(),
            seed: 3
        }
    );
    assert_eq!(
        ModelSource::parse("gpt2").unwrap(),
        ModelSource::Hub("gpt2".into())
    );
    assert_eq!(
        ModelSource::parse("HuggingFaceTB/SmolLM2-135M").unwrap(),
        ModelSource::Hub("HuggingFaceTB/SmolLM2-135M".into())
    );
    assert!(ModelSource::parse("random:gpt2-small@x").is_err());
    assert!(ModelSource::parse("has spaces in it").is_err());
}
