//! Device and precision choices (`--device cpu|cuda[:N]|auto`, `--dtype f32|bf16|f16`).
//!
//! A `--features cuda` build must still run where there is no GPU: `auto`
//! then falls back to the CPU (and [`cuda_fallback_reason`] says why, for a
//! note), while an explicit `cuda`/`cuda:N` is a one-line error. Opening a CUDA
//! device never aborts the process: `device_cuda` checks that the CUDA
//! libraries can be loaded before candle touches them, and each ordinal is
//! opened once per process, so every model and tensor on `cuda:N` shares one
//! candle device (candle refuses to mix tensors of two devices).

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
            open_cuda(ordinal).map_err(|reason| {
                ModelError::Source(format!(
                    "cannot open {s}: {reason} (use --device cpu, or --device auto to fall back to the CPU)"
                ))
            })
        }
    }
}

/// The best available device: CUDA 0 when compiled in and present, else the CPU.
pub fn best_device() -> Device {
    open_cuda(0).unwrap_or(Device::Cpu)
}

/// Why `auto` uses the CPU in a CUDA build (`None` in a CPU-only build, or
/// when CUDA 0 opens), for a one-line note.
pub fn cuda_fallback_reason() -> Option<String> {
    if !cfg!(feature = "cuda") {
        return None;
    }
    open_cuda(0).err()
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device, String> {
    super::device_cuda::open(ordinal)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device, String> {
    Err("patchbench was built without CUDA".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_parse_and_bad_names_are_refused() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(matches!(parse_device(" CPU "), Ok(Device::Cpu)));
        // `auto` always yields a device; on a machine without a GPU, the CPU.
        let auto = parse_device("auto").unwrap();
        assert_eq!(
            auto.is_cpu(),
            cuda_fallback_reason().is_some() || !cfg!(feature = "cuda")
        );
        for bad in ["cuda:x", "cuda:-1", "cuda0", "gpu", "metal"] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("cpu, cuda, cuda:N or auto"), "{bad}: {e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_names_the_feature() {
        assert_eq!(cuda_fallback_reason(), None);
        let e = parse_device("cuda:1").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
