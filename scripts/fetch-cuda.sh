#!/usr/bin/env bash
# Fetch a CUDA 13.0 toolkit (nvcc, headers, cudart) from PyPI for building
# patchbench's `cuda` feature on a machine that has no toolkit.
#
# NVIDIA publishes CUDA 13 as wheels whose files all land under nvidia/cu13/,
# which together form an ordinary CUDA root (bin/nvcc, nvvm/, include/, lib/).
# 13.0 is chosen on purpose: PTX from nvcc 13.0 loads under every CUDA 13
# driver, while PTX from a newer nvcc is refused by an older driver. We install
# the pinned wheels with pip (hashes required, no dependencies) into
#
#   ${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}/cuda-13.0
#
# and add the `lib/libcudart.so` link the wheels leave out (the linker needs
# it) and a lib64 link to lib (where nvcc looks). Only what the build needs is fetched (~105 MB): cuBLAS, cuRAND and NVRTC
# are loaded when a CUDA device is opened, from the GPU machine's own CUDA.
#
# Idempotent: an install that finished (its `.complete` marker exists) is
# reused. The last line on stdout is the CUDA root; pip's chatter goes to
# stderr. Any failure exits non-zero with a message.
#
# Environment:
#   PATCHBENCH_CACHE   cache root (default: $XDG_CACHE_HOME/patchbench or ~/.cache/patchbench)
#   PYTHON             python interpreter whose pip to use (default: python3)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
die() { echo "fetch-cuda: error: $*" >&2; exit 1; }

CACHE_ROOT="${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}"
DEST="$CACHE_ROOT/cuda-13.0"
ROOT="$DEST/nvidia/cu13"

if [ -e "$DEST/.complete" ] && [ -x "$ROOT/bin/nvcc" ]; then
    echo "$ROOT"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=...)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' is not available"

mkdir -p "$CACHE_ROOT" || die "cannot create $CACHE_ROOT"
TMP="$(mktemp -d "$CACHE_ROOT/.cuda.XXXXXX")" || die "cannot create a temporary directory in $CACHE_ROOT"
trap 'rm -rf "$TMP"' EXIT

# Versions and hashes of the manylinux x86_64 wheels.
cat >"$TMP/requirements.txt" <<'REQ'
nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
REQ

echo "fetch-cuda: installing CUDA 13.0 (nvcc, nvvm, runtime, headers; ~105 MB) from PyPI ..." >&2
"$PYTHON" -m pip install --no-deps --only-binary=:all: --require-hashes \
    --disable-pip-version-check --no-compile --quiet \
    --target "$TMP/install" -r "$TMP/requirements.txt" >&2 ||
    die "pip install of the CUDA 13.0 wheels failed"

troot="$TMP/install/nvidia/cu13"
[ -x "$troot/bin/nvcc" ] || die "nvcc missing from the installed wheels ($troot/bin/nvcc)"
[ -e "$troot/lib/libcudart.so.13" ] || die "libcudart.so.13 missing from the installed wheels"
ln -sf libcudart.so.13 "$troot/lib/libcudart.so"
# nvcc.profile looks for libraries in lib64, as in NVIDIA's installers.
ln -sfn lib "$troot/lib64"
"$troot/bin/nvcc" --version >&2 || die "the installed nvcc does not run"

rm -rf "$DEST"
mv "$TMP/install" "$DEST" || die "cannot move the toolkit into $DEST"
touch "$DEST/.complete"
echo "fetch-cuda: installed CUDA 13.0 in $ROOT" >&2
echo "$ROOT"
