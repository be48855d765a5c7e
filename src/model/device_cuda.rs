//! Opening CUDA devices in a `--features cuda` build without ever aborting.
//!
//! cudarc (candle's CUDA bindings) is built with dynamic loading (see
//! vendor/cudarc): the CUDA libraries are opened with dlopen on first
//! use, and cudarc panics if one is missing. So before candle opens a device
//! we ask cudarc, library by library, whether each can be loaded, and name the
//! missing one; anything that still panics inside candle is caught and turned
//! into an error. Results are kept per ordinal: a device is opened once per
//! process (candle gives each `Device::new_cuda` a new identity, and refuses to
//! mix tensors of two), and a failure is not retried.

use std::sync::Mutex;

use candle_core::Device;

/// Devices (or failures) by ordinal, in the order they were asked for.
static OPENED: Mutex<Vec<(usize, Result<Device, String>)>> = Mutex::new(Vec::new());

/// Opens CUDA device `ordinal`, or says in one line why it cannot be used.
pub fn open(ordinal: usize) -> Result<Device, String> {
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = opened.iter().find(|(o, _)| *o == ordinal) {
        return r.clone();
    }
    let r = try_open(ordinal);
    opened.push((ordinal, r.clone()));
    r
}

fn try_open(ordinal: usize) -> Result<Device, String> {
    if let Some(missing) = missing_library() {
        return Err(missing);
    }
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(describe(&e.to_string())),
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(format!("CUDA failed to start: {}", one_line(what)))
        }
    }
}

/// A CUDA library's name and cudarc's check that it can be loaded.
type Probe = (&'static str, unsafe fn() -> bool);

/// The first CUDA library that cannot be loaded, as a message. The driver
/// comes with the GPU's driver installation; the others with a CUDA toolkit
/// or the nvidia-cublas / nvidia-curand wheels (the loader must find them:
/// LD_LIBRARY_PATH).
fn missing_library() -> Option<String> {
    // SAFETY: each check only tries to dlopen a library by name and closes it.
    let probes: [Probe; 4] = [
        (
            "libcuda.so (the NVIDIA driver)",
            cudarc::driver::sys::is_culib_present,
        ),
        ("libcublas.so", cudarc::cublas::sys::is_culib_present),
        ("libcublasLt.so", cudarc::cublaslt::sys::is_culib_present),
        ("libcurand.so", cudarc::curand::sys::is_culib_present),
    ];
    for (i, (name, present)) in probes.iter().enumerate() {
        if !unsafe { present() } {
            return Some(if i == 0 {
                format!("no CUDA driver on this machine ({name} cannot be loaded)")
            } else {
                format!(
                    "{name} cannot be loaded: put the libraries of the CUDA version patchbench \
                     was built with on LD_LIBRARY_PATH"
                )
            });
        }
    }
    None
}

/// candle's error for a driver failure, shortened to its CUDA reason.
fn describe(e: &str) -> String {
    let e = one_line(e);
    if e.contains("CUDA_ERROR_NO_DEVICE") {
        "no CUDA device found (CUDA_ERROR_NO_DEVICE)".into()
    } else if e.contains("CUDA_ERROR_INVALID_DEVICE") {
        "no CUDA device with that number (CUDA_ERROR_INVALID_DEVICE)".into()
    } else {
        e
    }
}

fn one_line(s: &str) -> String {
    crate::util::text::clip(&crate::util::text::one_line(s), 300).into_owned()
}
