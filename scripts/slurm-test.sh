#!/usr/bin/env bash
# End-to-end test of scripts/slurm/ on a real, local Slurm cluster.
#
# Installs Debian's slurm-wlm and munge when missing (apt-get, as root),
# starts munged, slurmctld and slurmd on this machine from a generated
# slurm.conf (one node, 2 CPUs, no GPUs, no cgroups, all state in a
# temporary directory), submits a 3-task array of demo-model sweep shards
# and the merge chained with --dependency=afterok, waits, and compares the
# merged result with a single-process run of the same sweep, byte for byte
# (CSV) and value for value (JSON without timing). Task 1 is requeued
# (`scontrol requeue`) while it runs, once its checkpoint holds finished
# batches: Slurm kills it and runs it again, and it must resume from the
# checkpoint (its log says so) and still give the same merged result. The
# A session's sweep runs as a 2-task array merged --into the session, and a
# circuit search (exact edge patching) as a 2-task array of `circuit
# --shard` parts merged by merge.sbatch, each compared with one process. The
# cluster is torn down on exit, however the script ends (trap), leaving
# nothing running. Timings: the single-process run, the array's wall time
# from submission to merged result, each task's compute (load + sweep, from
# its part) and the overhead per task (wall time on the 2 CPUs beyond the
# compute, divided among the 3 tasks and the merge).
#
#   scripts/slurm-test.sh            # builds target/debug/patchbench if needed
#   PATCHBENCH_BIN=path scripts/slurm-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf 'slurm-test: %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge"
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: install slurm-wlm and munge first (apt-get install slurm-wlm munge)"
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; }
fi

bin=${PATCHBENCH_BIN:-}
if [[ -z "$bin" ]]; then
  target_dir=${CARGO_TARGET_DIR:-$repo/target}
  cargo build --quiet --bin patchbench
  bin=$target_dir/debug/patchbench
fi
bin=$(realpath "$bin")

tmp=$(mktemp -d /tmp/patchbench-slurm.XXXXXX)
pids=()
teardown() {
  local rc=$?
  if command -v scancel >/dev/null && [[ -f $tmp/slurm.conf ]]; then
    SLURM_CONF=$tmp/slurm.conf timeout 5 scancel --quiet --user="$(id -un)" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # A job step still running when slurmd stopped leaves its slurmstepd
  # behind (it daemonizes): find this cluster's by the SLURM_CONF it
  # inherited from slurmd, and stop them.
  local env_pid
  for env_pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    # (the process may be gone by now: the redirection's error is silenced too)
    if { tr '\0' '\n' <"/proc/$env_pid/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$tmp/slurm.conf"; then
      kill -9 "$env_pid" 2>/dev/null || true
    fi
  done
  # munged forks into the background: stop it by its pid file.
  if [[ -s $tmp/munged.pid ]]; then
    local mpid
    mpid=$(cat "$tmp/munged.pid")
    kill "$mpid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
  fi
  if ((rc != 0)); then
    log "failed; logs:"
    tail -n 20 "$tmp"/*.log 2>/dev/null >&2 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap teardown EXIT INT TERM

# Free ports for this cluster only.
port=$((20000 + RANDOM % 20000))
host=$(hostname -s)
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/parts" "$tmp/munge"

log "starting munged"
dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge.key"
munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge/munge.sock" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge.seed"

cat >"$tmp/slurm.conf" <<CONF
ClusterName=patchbench-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$tmp/slurm.conf

log "starting slurmctld and slurmd ($host, port $port)"
slurmctld -D -c -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
for i in $(seq 120); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
  [[ $state == idle ]] && break
  if ((i == 120)); then
    log "the node never became idle (state: ${state:-none})"
    exit 1
  fi
  sleep 0.5
done

# The sweep: the demo model's IOI prompt, every head component (5 x 4 x 4
# cells), 32 noise samples, batches capped at 1 MiB, so each shard is
# some seventy small batches and lasts long enough (about a second) to be
# requeued in the middle.
sweep=(--model demo --device cpu --target heads_every
  --clean "when mary and john went to the store , john gave a drink to"
  --corrupted "when mary and john went to the store , mary gave a drink to"
  --answer mary --wrong john --corruption gaussian --samples 32 --seed 1
  --max-batch-mem 1)

log "single-process run"
t0=$(now)
"$bin" sweep "${sweep[@]}" --format csv --out "$tmp/single.csv"
t1=$(now)
"$bin" sweep "${sweep[@]}" --out "$tmp/single.json"
single=$(secs "$t0" "$t1")

log "submitting a 3-task array and the merge"
t2=$(now)
export PATCHBENCH=$bin
jid=$(sbatch --parsable --chdir="$tmp" --array=1-3 \
  scripts/slurm/sweep-array.sbatch "$tmp/parts" "${sweep[@]}")
mid=$(sbatch --parsable --chdir="$tmp" --dependency=afterok:"$jid" --kill-on-invalid-dep=yes \
  scripts/slurm/merge.sbatch "$tmp/parts" 3 "$tmp/merged.csv" --format csv)
# Requeue task 1 in the middle of its sweep: once its checkpoint holds a
# few finished batches (header + 3 records) and before its part exists.
ckpt=$tmp/parts/part-1-of-3.json
for i in $(seq 1200); do
  # Read once: the checkpoint goes away when the part is written.
  lines=$({ wc -l <"$ckpt.ckpt"; } 2>/dev/null || echo 0)
  if ((lines >= 4)); then break; fi
  if [[ -s $ckpt ]] || ((i == 1200)); then
    log "task 1 finished (or never started) before it could be requeued"
    exit 1
  fi
  sleep 0.02
done
done_before=$((lines - 1))
scontrol requeue "${jid}_1"
log "requeued task ${jid}_1 with at least $done_before finished batches in its checkpoint"
# Slurm makes a requeued job eligible again only 120 s later (its begin
# time); on a cluster that is fine, here it is moved to now once the task
# is back in the queue.
for i in $(seq 200); do
  [[ $(squeue -h -j "${jid}_1" -o %T 2>/dev/null) == PENDING ]] && break
  sleep 0.05
done
scontrol update JobId="${jid}_1" StartTime=now
for i in $(seq 600); do
  [[ -z $(squeue -h -j "$jid,$mid" 2>/dev/null) ]] && break
  if ((i == 600)); then
    log "the jobs did not finish within 300 s"
    squeue >&2 || true
    exit 1
  fi
  sleep 0.5
done
t3=$(now)
array=$(secs "$t2" "$t3")
if [[ ! -s $tmp/merged.csv ]]; then
  log "the merge job wrote nothing"
  cat "$tmp"/patchbench-*.log >&2 || true
  exit 1
fi
cmp "$tmp/single.csv" "$tmp/merged.csv"
"$bin" merge "$tmp"/parts/part-*-of-3.json --out "$tmp/merged.json"
strip() { grep -v -e '"sweep_ms"' -e '"load_ms"' -e '"forward_passes"' "$1"; }
diff <(strip "$tmp/single.json") <(strip "$tmp/merged.json") >/dev/null ||
  { log "merged JSON differs from the single-process run"; exit 1; }
task1_log=$tmp/patchbench-sweep-${jid}_1.log
if ! grep -q "restart 1" "$task1_log" || ! grep -q "^resumed: [1-9]" "$task1_log"; then
  log "task 1 did not resume from its checkpoint after the requeue; its log:"
  cat "$task1_log" >&2
  exit 1
fi
log "$(grep "^resumed:" "$task1_log")"

# A session's sweep the same way: a 2-task array of `sweep --session`
# shards, merged --into the session, equals `sweep --session --write`.
cat >"$tmp/single.yaml" <<'YAML'
version: 1
model:
  source: demo
prompts:
- clean: when mary and john went to the store , john gave a drink to
  corrupted: when mary and john went to the store , mary gave a drink to
  answer: mary
  wrong: john
notes: kept by the merge
sweeps:
- spec:
    target: head_out_by_pos
    direction: denoise
    corruption:
      kind: prompt
    window: 10
YAML
cp "$tmp/single.yaml" "$tmp/array.yaml"
"$bin" sweep --session "$tmp/single.yaml" --write 2>/dev/null
t4=$(now)
sjid=$(sbatch --parsable --chdir="$tmp" --array=1-2 \
  scripts/slurm/sweep-array.sbatch "$tmp/session-parts" --session "$tmp/array.yaml" --device cpu)
smid=$(sbatch --parsable --chdir="$tmp" --dependency=afterok:"$sjid" --kill-on-invalid-dep=yes \
  scripts/slurm/merge.sbatch "$tmp/session-parts" 2 --into "$tmp/array.yaml")
for i in $(seq 600); do
  [[ -z $(squeue -h -j "$sjid,$smid" 2>/dev/null) ]] && break
  if ((i == 600)); then
    log "the session jobs did not finish within 300 s"
    exit 1
  fi
  sleep 0.5
done
t5=$(now)
strip_yaml() { grep -v -e 'computed_at:' -e 'load_ms:' -e 'sweep_ms:' -e 'forward_passes:' "$1"; }
diff <(strip_yaml "$tmp/single.yaml") <(strip_yaml "$tmp/array.yaml") >/dev/null ||
  { log "the session merged --into differs from sweep --session --write"; cat "$tmp"/patchbench-merge-*.log >&2; exit 1; }
log "session sweep: 2-task array merged --into the session equals sweep --session --write ($(secs "$t4" "$t5") s wall)"
# A circuit search the same way: a 2-task array of `circuit --shard`
# parts (exact edge patching splits over edges), merged by merge.sbatch
# (which finishes the search with the model), equals one `circuit` run.
circuit=(circuit --model demo --device cpu --method exact --top 0 --check-exact 0
  --faithfulness-points 3 --clean "john gave a drink to" --corrupted "mary gave a drink to"
  --answer mary --wrong john)
"$bin" "${circuit[@]}" --format json --out "$tmp/circuit-single.json"
t6=$(now)
cjid=$(sbatch --parsable --chdir="$tmp" --array=1-2 \
  scripts/slurm/sweep-array.sbatch "$tmp/circuit-parts" "${circuit[@]}")
cmid=$(sbatch --parsable --chdir="$tmp" --dependency=afterok:"$cjid" --kill-on-invalid-dep=yes \
  scripts/slurm/merge.sbatch "$tmp/circuit-parts" 2 "$tmp/circuit-merged.json" --device cpu)
for i in $(seq 600); do
  [[ -z $(squeue -h -j "$cjid,$cmid" 2>/dev/null) ]] && break
  if ((i == 600)); then
    log "the circuit jobs did not finish within 300 s"
    exit 1
  fi
  sleep 0.5
done
t7=$(now)
strip_circuit() { grep -v -e '"load_ms"' -e '"runs_ms"' -e '"scores_ms"' -e '"exact_ms"' -e '"faithfulness_ms"' "$1"; }
if [[ ! -s $tmp/circuit-merged.json ]] ||
  ! diff <(strip_circuit "$tmp/circuit-single.json") <(strip_circuit "$tmp/circuit-merged.json") >/dev/null; then
  log "the merged circuit differs from the single-process run"
  cat "$tmp"/patchbench-merge-*.log >&2 || true
  exit 1
fi
log "circuit search: 2-task array merged equals the single-process run ($(secs "$t6" "$t7") s wall)"

compute=0
for k in 1 2 3; do
  ms=$(grep -o -e '"load_ms": [0-9.]*' -e '"sweep_ms": [0-9.]*' "$tmp/parts/part-$k-of-3.json" |
    awk '{ s += $2 } END { printf "%.0f", s }')
  log "part $k: load + sweep ${ms} ms$( ((k == 1)) && echo " (its run after the requeue)")"
  compute=$((compute + ms))
done
overhead=$(awk -v w="$array" -v c="$compute" 'BEGIN { printf "%.2f", (w - c / 1000 / 2) / 4 }')
log "ok: merged 3-task array equals the single-process run (single ${single} s; array + merge ${array} s wall, with a requeue; overhead ~${overhead} s per job)"
