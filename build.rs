//! Build script: only the `cuda` feature needs one.
//!
//! candle's kernels ask the linker for `-lcudart`, which would make the CUDA
//! runtime a load-time dependency of the binary: then it cannot start where
//! libcudart.so is not on the loader's path (a machine without a GPU, or CUDA
//! from PyPI wheels). Every CUDA toolkit also ships the runtime as a static
//! archive (nvcc links it that way by default), so we put a one-line linker
//! script named `libcudart.so` first on the search path that pulls in
//! `libcudart_static.a` instead. The static runtime opens the driver with
//! dlopen when first used; with cudarc's dynamic loading (vendor/cudarc)
//! the binary then needs no CUDA library at all until a CUDA device is opened.
//!
//! The toolkit is found as candle's build finds it: $CUDA_HOME, $CUDA_ROOT,
//! $CUDA_PATH, the nvcc on PATH, then /usr/local/cuda and /usr; where no static
//! runtime is found the build goes on with the shared one and says so.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    // Not PATH: it changes from shell to shell and would rebuild patchbench.
    for var in ["CUDA_HOME", "CUDA_ROOT", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(archive) = cuda_roots().iter().find_map(|root| static_cudart(root)) else {
        println!(
            "cargo:warning=libcudart_static.a not found (set CUDA_HOME): the binary will need libcudart.so at run time"
        );
        return;
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("cudart");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/cudart");
    let script = format!("INPUT({})\n", archive.display());
    std::fs::write(out.join("libcudart.so"), script).expect("write the cudart linker script");
    println!("cargo:rustc-link-search=native={}", out.display());
    // What the static runtime needs from the system (part of libc on recent
    // glibc; named for older ones).
    for lib in ["dl", "pthread", "rt"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}

/// Candidate toolkit roots, most specific first.
fn cuda_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_ROOT", "CUDA_PATH"]
        .iter()
        .filter_map(env::var_os)
        .map(PathBuf::from)
        .collect();
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let nvcc = dir.join("nvcc");
            if nvcc.is_file() {
                let real = nvcc.canonicalize().unwrap_or(nvcc);
                if let Some(root) = real.parent().and_then(Path::parent) {
                    roots.push(root.to_path_buf());
                }
            }
        }
    }
    roots.extend(["/usr/local/cuda", "/usr"].map(PathBuf::from));
    roots
}

fn static_cudart(root: &Path) -> Option<PathBuf> {
    [
        "lib64",
        "lib",
        "targets/x86_64-linux/lib",
        "lib/x86_64-linux-gnu",
    ]
    .iter()
    .map(|dir| root.join(dir).join("libcudart_static.a"))
    .find(|p| p.is_file())
}
