//! The safetensors header check, then building every tensor it admits
//! (sizes checked, values checked finite), as the loader does.
#![no_main]

use std::path::Path;

use candle_core::{DType, Device};
use libfuzzer_sys::fuzz_target;
use patchbench::model::families::RawWeights;
use patchbench::model::safetensors_io;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(st) = safetensors_io::check(data, path) {
        let mut raw = RawWeights::new();
        let _ = safetensors_io::tensors(&st, path, &Device::Cpu, DType::F32, &mut raw);
    }
});
