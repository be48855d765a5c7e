//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cli;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reference tensors written by tools/make_fixtures.py (Hugging Face transformers).
pub fn reference(name: &str) -> HashMap<String, Tensor> {
    let p = fixture(name).join("reference.safetensors");
    candle_core::safetensors::load(&p, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn reference_json(name: &str) -> serde_json::Value {
    reference_json_named(name, "reference.json")
}

/// A JSON file of fixture directory `name`.
pub fn reference_json_named(name: &str, file: &str) -> serde_json::Value {
    let p = fixture(name).join(file);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Path of the SmolLM2 GGUF fetched by scripts/fetch-smollm2.sh; a missing
/// file is a test failure, never a skip.
pub fn smollm2_gguf() -> PathBuf {
    let p = std::env::var_os("PATCHBENCH_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("PATCHBENCH_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("patchbench"))
                })
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/patchbench")
                });
            let dir = cache.join("smollm2");
            std::fs::read_dir(&dir)
                .ok()
                .and_then(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
                })
                .unwrap_or(dir.join("(missing).gguf"))
        });
    assert!(
        p.is_file(),
        "SmolLM2 GGUF not found at {}: run scripts/fetch-smollm2.sh (the test script does) or set PATCHBENCH_SMOLLM2_GGUF",
        p.display()
    );
    p
}

/// Path of the Gemma 3 270M GGUF that scripts/fetch-gemma3.sh fetched, from
/// `PATCHBENCH_GEMMA3_GGUF` (scripts/test.sh sets it). Unset or missing is a
/// test failure naming the fetch script, never a skip.
pub fn gemma3_gguf() -> PathBuf {
    let Some(p) = std::env::var_os("PATCHBENCH_GEMMA3_GGUF").map(PathBuf::from) else {
        panic!(
            "PATCHBENCH_GEMMA3_GGUF is not set: run the tests with scripts/test.sh, or run \
             scripts/fetch-gemma3.sh and set PATCHBENCH_GEMMA3_GGUF to the path it prints"
        );
    };
    assert!(
        p.is_file(),
        "PATCHBENCH_GEMMA3_GGUF is {}, which is not a file: run scripts/fetch-gemma3.sh and set \
         PATCHBENCH_GEMMA3_GGUF to the path it prints",
        p.display()
    );
    p
}
