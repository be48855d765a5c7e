#!/usr/bin/env bash
# Checks a patchbench built with `--features cuda` where no GPU can be used:
# it must start without any CUDA library, fall back to the CPU under
# `--device auto` with a note, refuse `--device cuda`/`cuda:N` with a one-line
# error (no panic, no backtrace), and compute correctly on the CPU.
#
# Usage: scripts/check-cuda-binary.sh PATH/TO/patchbench
#
# CUDA_VISIBLE_DEVICES is emptied so the outcome is the same on a machine with
# a GPU (the driver then reports no device) as on one without a driver.
# Prints one line per check and exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:?usage: scripts/check-cuda-binary.sh PATH/TO/patchbench}"
[ -x "$bin" ] || { echo "check-cuda-binary: $bin is not an executable" >&2; exit 1; }
export CUDA_VISIBLE_DEVICES=""
export RUST_BACKTRACE=1 # a backtrace must not appear even when asked for
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
fail() {
    echo "check-cuda-binary: FAIL: $*" >&2
    for f in "$tmp"/out "$tmp"/err; do
        [ -s "$f" ] && { echo "--- ${f##*/}:" >&2; head -n 20 "$f" >&2; }
    done
    exit 1
}
pass() { echo "check-cuda-binary: ok: $*"; passed=$((passed + 1)); }

# Runs the binary with stdout/stderr to files; sets $rc.
run() {
    set +e
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    set -e
}

# 1. No CUDA library is a load-time dependency.
needed="$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')"
if grep -Eq 'libcuda|libcudart|libcublas|libcurand|libnvrtc' <<<"$needed"; then
    fail "the binary links CUDA libraries at load time: $(tr '\n' ' ' <<<"$needed")"
fi
pass "needs no CUDA library to start ($(tr '\n' ' ' <<<"$needed"))"

# 2. It is a CUDA build: the refusal is about the device, not the feature.
prompt="the cat sat on the"
run run -m demo -p "$prompt" --device cuda
[ "$rc" -eq 1 ] || fail "--device cuda exited $rc, want 1"
grep -q 'needs a patchbench built with CUDA' "$tmp/err" && fail "the binary was built without the cuda feature"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "--device cuda printed $(wc -l <"$tmp/err") lines on stderr, want 1"
grep -q '^error: cannot open cuda: ' "$tmp/err" || fail "--device cuda: unexpected error line"
grep -Eqi 'panicked|backtrace' "$tmp/err" && fail "--device cuda panicked or printed a backtrace"
[ -s "$tmp/out" ] && fail "--device cuda printed results"
pass "--device cuda: $(cat "$tmp/err")"

run check-device --device cuda:3 --fixtures tests/fixtures
[ "$rc" -eq 1 ] || fail "check-device --device cuda:3 exited $rc, want 1"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "check-device --device cuda:3 printed more than one line on stderr"
grep -q '^error: cannot open cuda:3: ' "$tmp/err" || fail "check-device --device cuda:3: unexpected error line"
pass "check-device --device cuda:3 refused in one line"

# 3. auto falls back to the CPU, says why once, and gives the CPU build's answer.
run run -m demo -p "$prompt" --device auto --format json
[ "$rc" -eq 0 ] || fail "--device auto exited $rc"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "--device auto printed $(wc -l <"$tmp/err") lines on stderr, want the one note"
grep -q '^note: not using CUDA: .*; running on the CPU$' "$tmp/err" || fail "--device auto: no fallback note"
cp "$tmp/out" "$tmp/auto.json"
run run -m demo -p "$prompt" --device cpu --format json
[ "$rc" -eq 0 ] || fail "--device cpu exited $rc"
[ ! -s "$tmp/err" ] || fail "--device cpu printed on stderr"
cmp -s "$tmp/out" "$tmp/auto.json" || fail "--device auto and --device cpu give different results"
grep -q '"top"' "$tmp/out" || fail "--device cpu printed no top tokens"
pass "--device auto falls back to the CPU: $(cat "$tmp/err")"

run run -m demo -p "$prompt" --device auto --weights bf16 --format json
[ "$rc" -eq 0 ] || fail "--device auto --weights bf16 exited $rc"
grep -q '^note: not using CUDA: ' "$tmp/err" || fail "--device auto --weights bf16: no fallback note"
cp "$tmp/out" "$tmp/auto.json"
run run -m demo -p "$prompt" --device cpu --weights bf16 --format json
[ "$rc" -eq 0 ] || fail "--device cpu --weights bf16 exited $rc"
cmp -s "$tmp/out" "$tmp/auto.json" || fail "--device auto and --device cpu give different results in bf16"
pass "--device auto --weights bf16 falls back to the CPU"

# 4. The CPU path of the CUDA build matches the fixtures' CPU reference
#    (check-device on the CPU compares f32 with itself, bf16 with f32 and the
#    GGUF fixtures' quantized blocks with themselves).
run check-device --device cpu --fixtures tests/fixtures --weights f32,bf16,quantized
[ "$rc" -eq 0 ] || fail "check-device --device cpu exited $rc"
grep -q ' 0 mismatches$' "$tmp/out" || fail "check-device --device cpu reported mismatches"
pass "check-device --device cpu: $(tail -n 1 "$tmp/out")"

echo "check-cuda-binary: $passed passed, 0 failed"
