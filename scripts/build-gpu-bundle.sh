#!/usr/bin/env bash
# Build the GPU check bundle: a release patchbench built with `--features
# cuda` against CUDA 13.0 (the PyPI wheels, which match the CUDA 13 drivers of
# current GPU machines), stripped of debug info, plus the fixture models, as
# one xz-compressed tarball that scripts/gpu-check.sh unpacks and runs on a
# machine with a GPU and no Rust toolchain:
#
#   dist/patchbench-gpu.tar.xz     (dist/ is not committed)
#
# The binary needs no CUDA library to start (the runtime is linked statically,
# the rest is opened when a device is): on the GPU machine it takes the
# driver's libcuda and the CUDA 13 cuBLAS/cuRAND there (gpu-check.sh finds
# them). The kernels are compiled for compute capability $CUDA_COMPUTE_CAP,
# default 90 (H100/H200; their PTX also runs on later GPUs).
#
# Environment:
#   CUDA_COMPUTE_CAP          target GPU (default 90)
#   PATCHBENCH_BUNDLE_TARGET  cargo target dir (default target/gpu-bundle, or
#                             $CARGO_TARGET_DIR-gpu-bundle when that is set)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "build-gpu-bundle: error: $*" >&2; exit 1; }

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# Always the pinned CUDA 13.0 from PyPI, whatever toolkit this machine has.
root="$(scripts/fetch-cuda.sh | tail -n 1)"
export CUDA_HOME="$root"
. scripts/cuda-env.sh
target="${PATCHBENCH_BUNDLE_TARGET:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR-gpu-bundle}}"
target="${target:-target/gpu-bundle}"

echo "build-gpu-bundle: cargo build --release --features cuda (compute capability $CUDA_COMPUTE_CAP) in $target" >&2
CARGO_TARGET_DIR="$target" cargo build --release --features cuda --bin patchbench
bin="$target/release/patchbench"
[ -x "$bin" ] || die "no binary at $bin"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/patchbench-gpu/fixtures"
strip --strip-debug -o "$stage/patchbench-gpu/patchbench" "$bin"
# The fixture models (each directory with a model in it: a config.json, or
# GGUF files as in gguf/) and their references; check-device finds them as
# in tests/fixtures.
for d in tests/fixtures/*/; do
    if [ -e "$d/config.json" ] || compgen -G "$d*.gguf" >/dev/null; then
        cp -r "$d" "$stage/patchbench-gpu/fixtures/"
    fi
done
{
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvcc --version | grep -i release
    echo "compute capability $CUDA_COMPUTE_CAP"
} >"$stage/patchbench-gpu/BUILD_INFO"

mkdir -p dist
out=dist/patchbench-gpu.tar.xz
tar -C "$stage" -cf - patchbench-gpu | xz -9 -T0 >"$out.tmp"
mv "$out.tmp" "$out"
size=$(wc -c <"$out")
limit=$((60 * 1000 * 1000))
echo "build-gpu-bundle: wrote $out ($((size / 1000)) kB; binary $(($(wc -c <"$stage/patchbench-gpu/patchbench") / 1000)) kB unpacked)" >&2
[ "$size" -le "$limit" ] || die "$out is $size bytes, over the 60 MB limit"
echo "$out"
