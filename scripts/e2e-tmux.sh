#!/usr/bin/env bash
# End-to-end test of the workbench: drives the real binary in tmux the way a
# user would, and checks what the screen shows.
#
#   start on the tiny GPT-2 fixture -> wait for the model -> choose head_out
#   -> run the sweep -> see the heatmap -> move the cursor -> drill into a
#   head -> save -> quit -> reopen the saved session -> the same heatmap is
#   shown at once, without recomputing -> export it as SVG -> edit a prompt
#   and see the result marked stale -> quit; then unsaved work survives a
#   killed terminal through the autosave, offered back at the next start;
#   a panic in a sweep (injected) is reported and the next sweep runs; a
#   panic on the UI thread (injected) restores the terminal.
#
# Installs tmux with apt-get when it is missing. PATCHBENCH_BIN names the
# binary (default: target/debug/patchbench, built if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v tmux >/dev/null 2>&1; then
  echo "e2e: installing tmux" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq tmux >/dev/null
fi
BIN="${PATCHBENCH_BIN:-target/debug/patchbench}"
[ -x "$BIN" ] || cargo build --quiet
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

WORK="$(mktemp -d)"
SESSION="pb-e2e-$$"
cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  tmux kill-session -t "$SESSION-2" 2>/dev/null || true
  tmux kill-session -t "$SESSION-3" 2>/dev/null || true
  tmux kill-session -t "$SESSION-4" 2>/dev/null || true
  tmux kill-session -t "$SESSION-5" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# Keep the user's config, sessions and autosave out of the test.
ENVS="XDG_DATA_HOME=$WORK/data XDG_CONFIG_HOME=$WORK/config PATCHBENCH_AUTOSAVE_SECS=3600 TERM=xterm-256color"

screen() { tmux capture-pane -p -t "$1"; }

# wait_for TARGET TEXT [SECONDS]: until the screen shows TEXT.
wait_for() {
  local target="$1" text="$2" limit="${3:-30}" i=0
  while ! screen "$target" | grep -qF -- "$text"; do
    i=$((i + 1))
    if [ "$i" -gt $((limit * 10)) ]; then
      echo "e2e: FAILED waiting for: $text" >&2
      echo "----- screen -----" >&2
      screen "$target" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "e2e: ok: $text"
}

send() { tmux send-keys -t "$1" "${@:2}"; }

# The heatmap block: the grid rows between the axis header and the legend.
grid() {
  screen "$1" | awk '/layer↓/{on=1; next} /no effect =/{on=0} on' | cut -c1-60
}

S="$SESSION"
tmux new-session -d -s "$S" -x 100 -y 32 \
  "env $ENVS $BIN --model tests/fixtures/gpt2-tiny --color none; echo EXITED \$?; sleep 30"

wait_for "$S" "loaded in"
wait_for "$S" "ready to run"
wait_for "$S" "17 tokens"

# Sweep pane: the target row, five steps right = head_out.
send "$S" Tab
send "$S" l l l l l
wait_for "$S" "head_out"
send "$S" r
wait_for "$S" "sweep done"
wait_for "$S" "Heatmap · head_out denoise prompt"
wait_for "$S" "head→"
wait_for "$S" "no effect ="
# The cursor starts on the last head of layer 0; move it.
wait_for "$S" "layer 0 · head 3"
send "$S" h
wait_for "$S" "layer 0 · head 2"
send "$S" j
wait_for "$S" "layer 1 · head 2"
BEFORE="$(grid "$S")"
READOUT="$(screen "$S" | grep -E '^│ld ' | head -n 1)"
[ -n "$BEFORE" ] || { echo "e2e: FAILED: empty heatmap" >&2; screen "$S" >&2; exit 1; }

# Drill into the head.
send "$S" Enter
wait_for "$S" "Drill-down · head L1H2"
wait_for "$S" "attention patterns"
wait_for "$S" "direct logit attribution"
wait_for "$S" "top attended tokens"
send "$S" Escape
wait_for "$S" "Heatmap · head_out"

# Save under a chosen name: Ctrl-s asks for a path the first time.
FILE="$WORK/ioi.yaml"
send "$S" C-s
wait_for "$S" "Save session as"
send "$S" C-a C-k
send "$S" -l "$FILE"
send "$S" Enter
wait_for "$S" "saved $FILE"
test -s "$FILE" || { echo "e2e: FAILED: $FILE not written" >&2; exit 1; }
grep -q "head_out" "$FILE"
send "$S" q
wait_for "$S" "EXITED 0"

# Reopen: the stored heatmap is shown as saved, nothing recomputed.
S2="$SESSION-2"
tmux new-session -d -s "$S2" -x 100 -y 32 \
  "env $ENVS $BIN open $FILE --color none; echo EXITED \$?; sleep 30"
wait_for "$S2" "Heatmap · head_out denoise prompt"
wait_for "$S2" "layer 1 · head 2"
AFTER="$(grid "$S2")"
if [ "$BEFORE" != "$AFTER" ]; then
  echo "e2e: FAILED: the reopened heatmap differs" >&2
  diff <(echo "$BEFORE") <(echo "$AFTER") >&2 || true
  exit 1
fi
echo "e2e: ok: same heatmap after reopening"
READOUT2="$(screen "$S2" | grep -E '^│ld ' | head -n 1)"
[ "$READOUT" = "$READOUT2" ] || { echo "e2e: FAILED: cell values differ: $READOUT vs $READOUT2" >&2; exit 1; }
echo "e2e: ok: same cell values after reopening"
wait_for "$S2" "loaded in"
if screen "$S2" | grep -qE "sweep done|elapsed"; then
  echo "e2e: FAILED: a sweep ran after reopening" >&2
  screen "$S2" >&2
  exit 1
fi
if screen "$S2" | grep -q "STALE"; then
  echo "e2e: FAILED: the stored result is marked stale with the same model" >&2
  screen "$S2" >&2
  exit 1
fi
echo "e2e: ok: nothing recomputed, not stale"

# Export the shown heatmap: an SVG beside the session file.
send "$S2" e
wait_for "$S2" "exported "
SVG="$WORK/ioi-sweep1-head_out-logit_diff_normalized.svg"
head -c 4 "$SVG" | grep -qF "<svg" || { echo "e2e: FAILED: no SVG at $SVG" >&2; ls "$WORK" >&2; exit 1; }
echo "e2e: ok: heatmap exported as SVG"

# Editing a prompt after the sweep ran marks its stored result stale.
send "$S2" i
send "$S2" -l "x"
send "$S2" Escape
wait_for "$S2" "STALE"
wait_for "$S2" "edited after it ran"
# Save and quit: quits once the save is done, and leaves no autosave.
send "$S2" q
wait_for "$S2" "Unsaved changes"
send "$S2" s
wait_for "$S2" "EXITED 0"
if ls "$WORK"/data/patchbench/autosave/*.yaml >/dev/null 2>&1; then
  echo "e2e: FAILED: an autosave was left after saving" >&2
  exit 1
fi
echo "e2e: ok: saved and quit"

# A lost terminal: unsaved work is autosaved and offered back at start.
S3="$SESSION-3"
tmux new-session -d -s "$S3" -x 100 -y 32 \
  "env $ENVS PATCHBENCH_AUTOSAVE_SECS=1 $BIN --model tests/fixtures/gpt2-tiny --color none; echo EXITED \$?; sleep 30"
wait_for "$S3" "ready to run"
send "$S3" a
wait_for "$S3" "pair 2/2"
sleep 2.5
tmux kill-session -t "$S3"
ls "$WORK"/data/patchbench/autosave/*.yaml >/dev/null
tmux new-session -d -s "$S3" -x 100 -y 32 \
  "env $ENVS $BIN --model tests/fixtures/gpt2-tiny --color none; echo EXITED \$?; sleep 30"
wait_for "$S3" "Restore autosave?"
# Answer once the model is in, so its "loaded" message does not replace
# the one this checks.
wait_for "$S3" "loaded in"
send "$S3" y
wait_for "$S3" "pair 2/2"
wait_for "$S3" "restored the autosave"
send "$S3" q
wait_for "$S3" "Unsaved changes"
send "$S3" y
wait_for "$S3" "EXITED 0"

# (Own data directories: no autosave from above is offered.)
# A panic in a sweep (injected) is reported in a popup; the session and
# the terminal stay, and the next sweep runs. Its message is printed to
# stderr once the terminal is restored.
S4="$SESSION-4"
tmux new-session -d -s "$S4" -x 100 -y 32 \
  "env $ENVS XDG_DATA_HOME=$WORK/data4 PATCHBENCH_INJECT_PANIC=worker $BIN --model tests/fixtures/gpt2-tiny --color none 2>$WORK/s4.err; echo EXITED \$?; sleep 30"
wait_for "$S4" "ready to run"
send "$S4" r
wait_for "$S4" "internal error"
wait_for "$S4" "injected panic in the sweep"
send "$S4" n
wait_for "$S4" "pair 1/1"
send "$S4" r
wait_for "$S4" "sweep done"
send "$S4" q
wait_for "$S4" "Unsaved changes"
send "$S4" y
wait_for "$S4" "EXITED 0"
grep -qF "injected panic in the sweep" "$WORK/s4.err"
echo "e2e: ok: a failed sweep is reported and the next one runs"

# A panic on the UI thread (injected) restores the terminal before its
# message is printed.
S5="$SESSION-5"
tmux new-session -d -s "$S5" -x 100 -y 32 \
  "env $ENVS XDG_DATA_HOME=$WORK/data5 PATCHBENCH_INJECT_PANIC=ui $BIN --model tests/fixtures/gpt2-tiny --color none; echo EXITED \$?; sleep 30"
wait_for "$S5" "ready to run"
send "$S5" r
wait_for "$S5" "EXITED 101"
wait_for "$S5" "injected panic on the UI thread"
if [ "$(tmux display -p -t "$S5" '#{alternate_on}')" != 0 ]; then
  echo "e2e: FAILED: the alternate screen is still up after a UI panic" >&2
  screen "$S5" >&2
  exit 1
fi
echo "e2e: ok: the terminal is restored after a UI panic"
echo "e2e: all steps passed"
