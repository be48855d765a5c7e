# shellcheck shell=bash
# Source this (`. scripts/cuda-env.sh`) before building patchbench's `cuda`
# feature: it finds a CUDA toolkit and exports what candle's build needs.
#
# - The toolkit: $CUDA_HOME (or $CUDA_ROOT, $CUDA_PATH) if it holds bin/nvcc,
#   else the nvcc on PATH, else CUDA 13.0 from PyPI via scripts/fetch-cuda.sh
#   (cached). PATH gets its bin/, LIBRARY_PATH (the linker) and
#   LD_LIBRARY_PATH (the built binary, for libcudart) its lib dirs, and
#   CUDA_HOME/CUDA_ROOT/CUDA_PATH all point at it (candle-kernels' and cudarc's
#   builds read different ones).
# - The compute capability: the kernels' build asks nvidia-smi for it, which
#   fails on a machine with a toolkit and no GPU (a login node, CI). When
#   CUDA_COMPUTE_CAP is unset and nvidia-smi reports none, it is set to
#   ${PATCHBENCH_DEFAULT_COMPUTE_CAP:-80}: sm_80 PTX also runs on newer GPUs
#   (the driver compiles it), and CUDA 11.8 knows no later Hopper target; but
#   candle's quantized matmul kernels are machine code for that capability
#   only, so build for the GPU you will run on (README, "GPU").
# - nvcc's parallelism: CUDAFORGE_THREADS (see below).
# Prints one line saying what it chose, on stderr.
_pb_cuda_root=""
for _pb_dir in "${CUDA_HOME:-}" "${CUDA_ROOT:-}" "${CUDA_PATH:-}"; do
    if [ -n "$_pb_dir" ] && [ -x "$_pb_dir/bin/nvcc" ]; then
        _pb_cuda_root="$_pb_dir"
        break
    fi
done
if [ -z "$_pb_cuda_root" ] && command -v nvcc >/dev/null 2>&1; then
    _pb_cuda_root="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
fi
if [ -z "$_pb_cuda_root" ]; then
    _pb_cuda_root="$("$(dirname "${BASH_SOURCE[0]}")/fetch-cuda.sh" | tail -n 1)" || return 1
fi
export CUDA_HOME="$_pb_cuda_root" CUDA_ROOT="$_pb_cuda_root" CUDA_PATH="$_pb_cuda_root"
export PATH="$_pb_cuda_root/bin:$PATH"
for _pb_dir in "$_pb_cuda_root/lib64" "$_pb_cuda_root/lib" "$_pb_cuda_root/targets/x86_64-linux/lib"; do
    if [ -d "$_pb_dir" ]; then
        export LIBRARY_PATH="$_pb_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
        export LD_LIBRARY_PATH="$_pb_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    _pb_cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')" || _pb_cap=""
    if [ -z "$_pb_cap" ]; then
        export CUDA_COMPUTE_CAP="${PATCHBENCH_DEFAULT_COMPUTE_CAP:-80}"
        echo "cuda-env: no GPU found; building for compute capability $CUDA_COMPUTE_CAP (set CUDA_COMPUTE_CAP to change)" >&2
    fi
fi
# candle's kernels are compiled by cudaforge, which runs nvcc on half the
# cores by default: one file at a time on a 2-core CI machine. nvcc is most
# of a cold CUDA build, so give it every core (not a build input: changing it
# rebuilds nothing).
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}"
echo "cuda-env: CUDA toolkit $_pb_cuda_root ($(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))" >&2
unset _pb_cuda_root _pb_dir _pb_cap
