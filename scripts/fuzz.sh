#!/bin/sh
# Runs one fuzz target for a bounded time, seeded from the test fixtures.
#
#   scripts/fuzz.sh TARGET SECONDS
#
# TARGET is gguf_header, safetensors_header, tokenizer, session_yaml or dataset.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain runs it
# with RUSTC_BOOTSTRAP=1. The working corpus lives in tools/fuzz/corpus/TARGET
# (ignored by git; seeds are copied in from tests/ and assets/ on every run,
# so a fresh checkout starts from them). A crash leaves its input in
# tools/fuzz/artifacts/TARGET/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tools/fuzz TARGET ARTIFACT
# and turn it into a regression test before fixing it.
# CARGO_TARGET_DIR is honoured (default tools/fuzz/target).
set -eu

usage="usage: scripts/fuzz.sh TARGET SECONDS (TARGET: gguf_header, safetensors_header, tokenizer, session_yaml, dataset)"
target=${1:?$usage}
seconds=${2:?$usage}
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/tools/fuzz"
corpus="$fuzz/corpus/$target"
mkdir -p "$corpus" "$fuzz/artifacts/$target"

seed() { # seed NAME FILE: copy a seed into the corpus
    [ -f "$2" ] && cp "$2" "$corpus/seed-$1"
}
fx="$root/tests/fixtures"
case "$target" in
gguf_header)
    seed llama-tiny.gguf "$fx/llama-tiny-gguf/model.gguf"
    # The header alone (metadata and tensor table): small inputs mutate fast.
    head -c 16384 "$fx/llama-tiny-gguf/model.gguf" >"$corpus/seed-header.gguf"
    max_len=524288
    ;;
safetensors_header)
    for m in gpt2-tiny llama-tiny pythia-tiny; do
        seed "$m-ref.safetensors" "$fx/$m/reference.safetensors"
    done
    seed gpt2-tiny.safetensors "$fx/gpt2-tiny/model.safetensors"
    max_len=1048576
    ;;
tokenizer)
    for m in gpt2-tiny llama-tiny; do
        seed "$m-tokenizer.json" "$fx/$m/tokenizer.json"
    done
    seed demo-tokenizer.json "$root/assets/demo/tokenizer.json"
    printf '\000{"a":0,"b":1,"ab":2,"\\u0120":3}\000a b\n' >"$corpus/seed-vocab-merges"
    max_len=262144
    ;;
dataset)
    for f in "$root"/tests/invalid-datasets/*.*; do
        seed "$(basename "$f")" "$f"
    done
    max_len=65536
    ;;
session_yaml)
    for f in "$root"/sessions/*.yaml "$root"/tests/invalid/*.yaml; do
        [ "$(wc -c <"$f")" -le 65536 ] && seed "$(basename "$f")" "$f"
    done
    max_len=65536
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac

export RUSTC_BOOTSTRAP=1
cd "$root"
exec cargo fuzz run --fuzz-dir tools/fuzz "$target" "$corpus" -- \
    -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=4096 -timeout=60 \
    -artifact_prefix="$fuzz/artifacts/$target/" -print_final_stats=1
