//! Device and precision choices (`--device cpu|cuda[:N]|auto`, `--dtype f32|bf16|f16`).

use candle_core::{DType, Device};

use super::ModelError;

/// Parses a device name; `auto` picks CUDA when built with it and a GPU is present.
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "auto" | "" => Ok(best_device()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        ModelError::Source(format!(
                            "bad device {s:?}: use cpu, cuda, cuda:N or auto"
                        ))
                    })?,
                None => {
                    return Err(ModelError::Source(format!(
                        "unknown device {s:?}: use cpu, cuda, cuda:N or auto"
                    )))
                }
            };
            if !cfg!(feature = "cuda") {
                return Err(ModelError::Source(format!(
                    "device {s:?} needs a patchbench built with CUDA: cargo build --release --features cuda"
                )));
            }
            Device::new_cuda(ordinal)
                .map_err(|e| ModelError::Source(format!("cannot open {s}: {e}")))
        }
    }
}

/// The best available device: CUDA 0 when compiled in and present, else the CPU.
pub fn best_device() -> Device {
    if cfg!(feature = "cuda") {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

/// Parses a dtype name.
pub fn parse_dtype(s: &str) -> Result<DType, ModelError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "half" => Ok(DType::F16),
        other => Err(ModelError::Source(format!(
            "unknown dtype {other:?}: use f32, bf16 or f16"
        ))),
    }
}

/// A short name for display and JSON output (`cpu`, `cuda:0`).
pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => match d.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".into(),
        },
        Device::Metal(_) => "metal".into(),
    }
}
