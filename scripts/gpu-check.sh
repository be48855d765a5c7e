#!/usr/bin/env bash
# Check patchbench's CUDA build on a machine with an NVIDIA GPU, in one
# command and no Rust toolchain: unpack the bundle made by
# scripts/build-gpu-bundle.sh, print the GPU, then run `patchbench
# check-device`:
#
# 1. every fixture model in f32, bf16 and (the GGUF ones) quantized on the GPU
#    against the CPU (logits and every hook; resid_pre and head_out sweeps
#    where the fixture has a prompt pair), plus both sweeps on
#    random:gpt2-small in each of those modes against the CPU;
# 2. both sweeps on the 7B-shape preset random:llama-2-7b in bf16, timed,
#    against f32 on the GPU.
#
# Exits non-zero on any mismatch (or if either run fails or overruns). Takes
# about PATCHBENCH_GPU_CHECK_MINUTES minutes; each run is capped by
# PATCHBENCH_GPU_CHECK_TIMEOUT seconds (140), so the whole check ends within
# 5 minutes.
#
# Usage: scripts/gpu-check.sh [BUNDLE]   (default dist/patchbench-gpu.tar.xz)
#
# CUDA libraries: the binary opens the driver's libcuda.so.1 and the CUDA 13
# libcublas, libcublasLt and libcurand when it opens the GPU. Where the loader
# does not find them already, the NVIDIA wheels of a Python installation
# (site-packages/nvidia/cu13/lib, as PyTorch's) or /usr/local/cuda are added
# to LD_LIBRARY_PATH; set it yourself to choose others.
#
# Environment:
#   PATCHBENCH_GPU_CHECK_SMALL   the model of part 1's sweeps (default
#                                random:gpt2-small)
#   PATCHBENCH_GPU_CHECK_BIG     the 7B-shape model (default random:llama-2-7b;
#                                empty string: leave part 2 out)
#   PATCHBENCH_GPU_CHECK_TIMEOUT seconds per run (default 140)
#   PATCHBENCH_GPU_CHECK_DEVICE  device to check (default cuda; `cpu` runs the
#                                script end to end on a machine without a GPU,
#                                to check the bundle and the script themselves)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "gpu-check: error: $*" >&2; exit 1; }

bundle="${1:-dist/patchbench-gpu.tar.xz}"
[ -f "$bundle" ] || die "no bundle at $bundle: build it with scripts/build-gpu-bundle.sh"
limit="${PATCHBENCH_GPU_CHECK_TIMEOUT:-140}"
device="${PATCHBENCH_GPU_CHECK_DEVICE:-cuda}"

if [ "$device" != cpu ]; then
    echo "== GPU"
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv ||
        die "nvidia-smi failed: no usable NVIDIA GPU here"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$bundle"
pb="$work/patchbench-gpu/patchbench"
[ -x "$pb" ] || die "$bundle holds no patchbench-gpu/patchbench"
echo "== bundle"
cat "$work/patchbench-gpu/BUILD_INFO"

# CUDA 13 libraries (see above).
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1" || { [ -n "${LD_LIBRARY_PATH:-}" ] &&
    for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/$1" ] && return 0; done; false; }; }
if ! have_lib libcublas.so.13 || ! have_lib libcurand.so.10; then
    candidates=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
    for py in python3 /opt/torch/.venv/bin/python3; do
        if command -v "$py" >/dev/null 2>&1; then
            while read -r sp; do
                candidates+=("$sp/nvidia/cu13/lib" "$sp/nvidia/cublas/lib" "$sp/nvidia/curand/lib")
            done < <("$py" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)
        fi
    done
    for d in "${candidates[@]}"; do
        if [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcurand.so.10" ]; then
            export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        fi
    done
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

small="${PATCHBENCH_GPU_CHECK_SMALL:-random:gpt2-small}"
big="${PATCHBENCH_GPU_CHECK_BIG-random:llama-2-7b}"

status=0
echo "== fixtures and $small: $device against the CPU"
timeout "$limit" "$pb" check-device --device "$device" --fixtures "$work/patchbench-gpu/fixtures" \
    --weights f32,bf16,quantized --sweep-model "$small" --cpu-reference || status=1
if [ -n "$big" ]; then
    echo "== $big: bf16 against f32, both on $device"
    timeout "$limit" "$pb" check-device --device "$device" --weights f32,bf16 --sweep-model "$big" || status=1
fi
if [ "$status" -eq 0 ]; then
    echo "gpu-check: PASSED"
else
    echo "gpu-check: FAILED"
fi
exit "$status"
