#!/usr/bin/env bash
# Measures key-to-frame latency while a sweep runs: starts the workbench on
# random:gpt2-small in tmux, runs a long sweep, and moves the heatmap cursor
# every 150 ms while it runs.
#
# Two numbers:
# - internal: PATCHBENCH_LATENCY_LOG, from the key being read to the end of
#   the frame that shows it (the workbench's own instrumentation);
# - external: from `tmux send-keys` until `tmux capture-pane` shows the new
#   cursor position (includes tmux and the polling interval).
#
# Usage: scripts/latency-tmux.sh [TARGET_STEPS] (steps right from resid_pre
# in the sweep pane; default 5 = head_out). Prints a summary.
# PATCHBENCH_LATENCY_DATASET=FILE starts the workbench with `--dataset FILE`
# (a sweep over many pairs in shared batches; e.g. 200 generated IOI pairs
# with PATCHBENCH_LATENCY_MODEL=demo).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${PATCHBENCH_BIN:-target/debug/patchbench}"
[ -x "$BIN" ] || cargo build --quiet
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
STEPS="${1:-5}"
MODEL="${PATCHBENCH_LATENCY_MODEL:-random:gpt2-small}"
DATASET=""
[ -n "${PATCHBENCH_LATENCY_DATASET:-}" ] && DATASET="--dataset $(cd "$(dirname "$PATCHBENCH_LATENCY_DATASET")" && pwd)/$(basename "$PATCHBENCH_LATENCY_DATASET")"
WORK="$(mktemp -d)"
S="pb-lat-$$"
trap 'tmux kill-session -t "$S" 2>/dev/null || true; rm -rf "$WORK"' EXIT
LOG="$WORK/latency.log"
tmux new-session -d -s "$S" -x 120 -y 36 \
  "env XDG_DATA_HOME=$WORK/d XDG_CONFIG_HOME=$WORK/c PATCHBENCH_LATENCY_LOG=$LOG $BIN --model $MODEL $DATASET; sleep 60"
screen() { tmux capture-pane -p -t "$S"; }
until screen | grep -q "loaded in"; do sleep 0.2; done
until screen | grep -q "ready to run"; do sleep 0.1; done
tmux send-keys -t "$S" Tab
for _ in $(seq "$STEPS"); do tmux send-keys -t "$S" l; done
sleep 0.5
tmux send-keys -t "$S" r
until screen | grep -q "elapsed"; do sleep 0.05; done
until screen | grep -qE "(layer|pos) [0-9]+ ·"; do sleep 0.05; done
ext=()
dir=k
for _ in $(seq 40); do
  screen | grep -q "elapsed" || break
  before="$(screen | grep -E '(layer|pos) [0-9]+ ·' | head -n 1)"
  if [ "$dir" = k ]; then dir=j; else dir=k; fi
  t0=$(date +%s%N)
  tmux send-keys -t "$S" "$dir"
  while :; do
    now="$(screen | grep -E '(layer|pos) [0-9]+ ·' | head -n 1)"
    [ "$now" != "$before" ] && break
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 2000 ] && break
  done
  t1=$(date +%s%N)
  ext+=( $(( (t1 - t0) / 1000 )) )
  sleep 0.15
done
still_running=$(screen | grep -c "elapsed" || true)
tmux send-keys -t "$S" Escape
sleep 0.5
tmux send-keys -t "$S" q
sleep 0.3
tmux send-keys -t "$S" y
for _ in $(seq 50); do [ -s "$LOG" ] && break; sleep 0.1; done
echo "model $MODEL${DATASET:+ ($DATASET)}, target steps $STEPS, sweep still running at the end: $still_running"
grep summary "$LOG" || { echo "no latency log"; exit 1; }
printf '%s\n' "${ext[@]}" | sort -n | awk '{a[NR]=$1} END {
  if (NR == 0) { print "external: no samples"; exit }
  printf "external (tmux send-keys -> capture-pane shows it): n=%d p50=%.1fms p95=%.1fms max=%.1fms\n",
    NR, a[int((NR+1)/2)]/1000, a[int(NR*0.95+0.5)]/1000, a[NR]/1000 }'
