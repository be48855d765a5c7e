#!/usr/bin/env bash
# Memory and load time of each --weights mode, and 7B-shape sweeps.
#
#   scripts/bench-weights.sh [BINARY]       (default: target/release/patchbench)
#
# Each `bench load` is its own process, so its peak resident memory (VmHWM)
# is that mode's alone. Models: SmolLM2-135M (scripts/fetch-smollm2.sh),
# Gemma 3 270M when scripts/fetch-gemma3.sh exists, and the random
# Llama-2-7B-shape preset in quantized (Q4_0) and bf16 form with a short
# resid_pre sweep, and the Gemma-2-2B-shape preset likewise. Set SKIP_7B=1
# to leave these big presets out (7B bf16 needs about 15 GB of free memory).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/patchbench}"
[ -x "$BIN" ] || { echo "bench-weights: no binary at $BIN; cargo build --release first" >&2; exit 1; }

models=("$(scripts/fetch-smollm2.sh | tail -n 1)")
if [ -x scripts/fetch-gemma3.sh ]; then
  models+=("$(scripts/fetch-gemma3.sh | tail -n 1)")
fi

for m in "${models[@]}"; do
  for mode in f32 bf16 f16 quantized; do
    # Gemma is refused in f16 (its activations overflow it).
    if [ "$mode" = f16 ] && [[ "$(basename "$m")" == gemma* ]]; then continue; fi
    echo "== $(basename "$m") --weights $mode"
    "$BIN" bench load --device cpu -m "$m" --weights "$mode"
    "$BIN" bench sweep --device cpu -m "$m" --weights "$mode" --exact-only \
      --clean "The Eiffel Tower is located in the city of" \
      --corrupted "The Colosseum is located in the city of" \
      --answer " Paris" --wrong " Rome" --target resid_pre | grep -E "argmax|baselines|fast|peak"
  done
done

if [ "${SKIP_7B:-0}" != 1 ]; then
  for mode in quantized bf16; do
    echo "== random:llama-2-7b --weights $mode, resid_pre sweep"
    /usr/bin/time -v "$BIN" bench sweep --device cpu -m random:llama-2-7b --weights "$mode" \
      --exact-only --clean "The Eiffel Tower is in" --corrupted "The Colosseum is in" \
      --answer " Paris" --wrong " Rome" --target resid_pre 2>&1 \
      | grep -E "load|rss|fast|argmax|peak|Maximum resident|Elapsed"
  done
  # Gemma 2 2B's shape (2.6B, vocabulary 256000): bf16 is about 5.2 GB.
  for mode in quantized bf16; do
    echo "== random:gemma-2-2b --weights $mode, resid_pre sweep"
    /usr/bin/time -v "$BIN" bench sweep --device cpu -m random:gemma-2-2b --weights "$mode" \
      --exact-only --clean "The Eiffel Tower is in" --corrupted "The Colosseum is in" \
      --answer " Paris" --wrong " Rome" --target resid_pre 2>&1 \
      | grep -E "load|rss|fast|argmax|peak|Maximum resident|Elapsed"
  done
fi
