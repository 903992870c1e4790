#!/usr/bin/env bash
# The kill and fault campaign (issue 14). Usage: campaign.sh meshlm mpirun repo_root [short|long]
#   signals   SIGINT, SIGTERM, SIGUSR1, SIGHUP at random moments, one process; under mpirun
#             (dp 2) SIGUSR1 to mpirun and SIGTERM to the ranks (what Slurm's scancel sends):
#             never a crash; each stop reports a step and leaves that step's valid checkpoint
#   kill -9   at random moments of a run saving every 2 steps and of its resumes (checkpoint
#             writes, the metrics rewrite): every step_* directory verifies, no progress is lost
#             beyond one save interval, and the run resumed to its end equals the uninterrupted
#             run bit for bit
#   kill -9   of both ranks of a tp 2 job saving distributed checkpoints (checkpoint_format
#   (parts)   parts, every rank writing its own part) at random moments: every step_* verifies, and
#             the run resumed to its end consolidates to the uninterrupted run's bytes
#   stall     SIGSTOP on one rank of two: the watchdog (3 s) ends the job naming that rank
# short (make test): 12 + 4 signal trials, 4 + 3 kill rounds, one stall; long (make test-long):
# 160 + 40, 100 + 30, three stalls. Prints the counts; exits non-zero on any failure.
set -uo pipefail
MESHLM="$(realpath "$1")"
MPIRUN="$2"
ROOT="$(realpath "$3")"
MODE="${4:-short}"
WORK="$(mktemp -d /tmp/meshlm_campaign.XXXXXX)"
# at exit: every process still running in the work directory (mpirun and ranks of a failed
# trial included), then the directory
reap() {
  for p in $(pgrep -f "meshlm|mpirun|mpiexec"); do
    [ "$p" != "$$" ] && [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$WORK" ] && kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap reap EXIT
export OMP_NUM_THREADS=1
mpi_run() {  # NP args...: under mpirun, as root, oversubscribed on the 2 cores
  local np=$1
  shift
  exec "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$@"
}
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
if [ "$MODE" = long ]; then SIG1=160; SIGM=40; KILLS=100; PKILLS=30; STALLS=3; else SIG1=12; SIGM=4; KILLS=4; PKILLS=3; STALLS=1; fi
SECONDS=0

cd "$WORK"
head -c 300000 "$ROOT/data/tinyshakespeare.txt" > small.txt
"$MESHLM" prepare --tokenizer bytes --input small.txt --output data >/dev/null
cat > model.toml <<TOML
n_layer = 2
n_head = 4
n_embd = 128
seq_len = 64
batch_size = 8
eval_every = 5
eval_batches = 4
peak_gflops = 100.0
lr_schedule = "constant"
TOML
rand_sleep() { sleep "$(/usr/bin/python3 -c "import random; print(random.uniform($1, $2))")"; }

# stopped_ok LOG RUN: the log reports a stop at step N and RUN/step_N verifies (or a stop
# before the first step with nothing to save)
stopped_ok() {
  local log="$1" run="$2" step
  grep -q "before the first step" "$log" && return 0
  step=$(grep -o "interrupted (SIG[A-Z0-9]*) at step [0-9]*" "$log" | grep -o "[0-9]*$" | head -1)
  [ -n "$step" ] || return 1
  "$MESHLM" info --checkpoint "$run/$(printf 'step_%06d' "$step")" >/dev/null 2>&1
}

# ---- signals, one process ----
crashes=0
for i in $(seq "$SIG1"); do
  sig=$(shuf -n1 -e INT TERM USR1 HUP)
  rm -rf s1
  "$MESHLM" train --config model.toml --data data --out s1 --steps 100000 > s1.log 2>&1 &
  pid=$!
  rand_sleep 0.05 1.5
  kill -"$sig" "$pid"
  wait "$pid"; rc=$?
  if [ $rc -ne 1 ] || ! stopped_ok s1.log s1; then
    crashes=$((crashes + 1)); fail "SIG$sig trial $i: exit $rc: $(tail -1 s1.log)"
  else ok; fi
done
echo "signals, one process: $SIG1 trials, $crashes failures ($SECONDS s)"

# ---- signals under mpirun (dp 2): SIGUSR1 to mpirun, SIGTERM to every rank ----
mcrash=0
for i in $(seq "$SIGM"); do
  how=$(shuf -n1 -e usr1-mpirun term-ranks)
  rm -rf s2
  mpi_run 2 "$MESHLM" train --config model.toml --data data --out s2 --steps 100000 --dp 2 > s2.log 2>&1 &
  launcher=$!
  for _ in $(seq 100); do grep -q '"loss"' s2/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
  rand_sleep 0.05 1.0
  if [ "$how" = usr1-mpirun ]; then kill -USR1 "$launcher"
  else pkill -TERM -P "$launcher"; fi  # the ranks: mpirun's children
  wait "$launcher"
  if ! stopped_ok s2.log s2 || grep -qi "segmentation\|corrupted\|signal 11" s2.log; then
    mcrash=$((mcrash + 1)); fail "mpirun $how trial $i: $(grep -m1 -i "error\|interrupted" s2.log)"
  else ok; fi
done
echo "signals, mpirun dp 2: $SIGM trials, $mcrash failures ($SECONDS s)"

# ---- kill -9 ----
STEPS=16
"$MESHLM" train --config model.toml --data data --out ref --steps $STEPS --save-every 2 > /dev/null 2>&1 || fail "reference run"
kills=0 corrupt=0 lost=0 inexact=0 in_save=0 in_resume=0
for i in $(seq "$KILLS"); do
  rm -rf k
  "$MESHLM" train --config model.toml --data data --out k --steps $STEPS --save-every 2 > k.log 2>&1 &
  pid=$!
  rand_sleep 0.1 1.5
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  kills=$((kills + 1))
  ls -d k/step_*.tmp >/dev/null 2>&1 && in_save=$((in_save + 1))
  # a resume killed too, half the time (the metrics rewrite, a save in the first steps)
  for round in 1 2; do
    latest=""
    for d in k/step_??????; do
      [ -d "$d" ] || continue
      if "$MESHLM" info --checkpoint "$d" >/dev/null 2>&1; then latest="$d"; else corrupt=$((corrupt + 1)); fail "kill $i: $d does not verify"; fi
    done
    last_line=$(grep -o '"step":[0-9]*,"loss"' k/metrics.jsonl 2>/dev/null | tail -1 | grep -o '[0-9]*')
    saved=${latest##*_}; saved=$((10#${saved:-0}))
    if [ -n "$last_line" ] && [ $((last_line - saved)) -gt 2 ]; then lost=$((lost + 1)); fail "kill $i: step $last_line logged, latest checkpoint $saved"; fi
    [ -n "$latest" ] || break
    [ $round -eq 2 ] || [ $((RANDOM % 2)) -eq 0 ] && break
    "$MESHLM" train --resume "$latest" --steps $STEPS > k.log 2>&1 &
    pid=$!
    rand_sleep 0.05 0.6
    kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    kills=$((kills + 1)) in_resume=$((in_resume + 1))
    ls -d k/step_*.tmp >/dev/null 2>&1 && in_save=$((in_save + 1))
  done
  # finish: resume from the latest valid checkpoint (or start again) to the end
  latest=$(ls -d k/step_?????? 2>/dev/null | tail -1)
  if [ -n "$latest" ]; then "$MESHLM" train --resume "$latest" --steps $STEPS > k.log 2>&1
  else "$MESHLM" train --config model.toml --data data --out k --steps $STEPS --save-every 2 --overwrite > k.log 2>&1; fi
  if cmp -s k/$(printf step_%06d $STEPS)/model.safetensors ref/$(printf step_%06d $STEPS)/model.safetensors &&
     cmp -s k/$(printf step_%06d $STEPS)/optimizer.safetensors ref/$(printf step_%06d $STEPS)/optimizer.safetensors; then ok
  else inexact=$((inexact + 1)); fail "kill $i: the resumed run differs from the uninterrupted one: $(tail -1 k.log)"; fi
  # every metrics line but a torn last one parses
  /usr/bin/python3 -c '
import json, sys
lines = open(sys.argv[1]).read().split("\n")
for l in lines[:-1]: json.loads(l)' k/metrics.jsonl || { fail "kill $i: metrics.jsonl has a broken line"; }
done
echo "kill -9: $kills kills ($in_save during a checkpoint write, $in_resume of a resume), $corrupt corrupt checkpoints accepted, $lost losses beyond one save interval, $inexact inexact resumes ($SECONDS s)"

# ---- kill -9 of a multi-writer save: tp 2, every rank writing its part ----
PSTEPS=8
PFLAGS=(--config model.toml --data data --steps $PSTEPS --save-every 2 --tp 2 --checkpoint-format parts --eval-batches 0)
final_export() {  # RUN OUT: the run's last checkpoint consolidated
  "$MESHLM" export --checkpoint "$1/$(printf step_%06d $PSTEPS)" --out "$2" --overwrite >/dev/null 2>&1
}
( mpi_run 2 "$MESHLM" train "${PFLAGS[@]}" --out pref ) > pref.log 2>&1 && final_export pref pref.hf || fail "parts reference run"
pcorrupt=0 pinexact=0 pin_save=0
for i in $(seq "$PKILLS"); do
  rm -rf pk
  mpi_run 2 "$MESHLM" train "${PFLAGS[@]}" --out pk > pk.log 2>&1 &
  launcher=$!
  for _ in $(seq 200); do grep -q '"loss"' pk/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
  rand_sleep 0.0 0.6
  pkill -KILL -P "$launcher"; wait "$launcher" 2>/dev/null
  ls -d pk/step_*.tmp >/dev/null 2>&1 && pin_save=$((pin_save + 1))
  for d in pk/step_??????; do
    [ -d "$d" ] || continue
    "$MESHLM" info --checkpoint "$d" >/dev/null 2>&1 || { pcorrupt=$((pcorrupt + 1)); fail "parts kill $i: $d does not verify"; }
  done
  latest=$(ls -d pk/step_?????? 2>/dev/null | tail -1)
  if [ -n "$latest" ]; then ( mpi_run 2 "$MESHLM" train --resume "$latest" --tp 2 --steps $PSTEPS ) > pk.log 2>&1
  else ( mpi_run 2 "$MESHLM" train "${PFLAGS[@]}" --out pk --overwrite ) > pk.log 2>&1; fi
  if final_export pk pk.hf && cmp -s pk.hf/model.safetensors pref.hf/model.safetensors; then ok
  else pinexact=$((pinexact + 1)); fail "parts kill $i (resumed from ${latest:-nothing}): differs from the uninterrupted run: $(tail -1 pk.log)"; fi
done
echo "kill -9 of multi-writer saves (tp 2, parts): $PKILLS rounds ($pin_save during a save), $pcorrupt corrupt checkpoints accepted, $pinexact inexact resumes ($SECONDS s)"

# ---- a stalled rank ----
for i in $(seq "$STALLS"); do
  rm -rf st
  start=$(date +%s)
  mpi_run 2 "$MESHLM" train --config model.toml --data data --out st --steps 100000 --dp 2 --watchdog 3 \
    --eval-batches 0 > st.log 2>&1 &
  launcher=$!
  for _ in $(seq 300); do n=$(grep -c '"loss"' st/metrics.jsonl 2>/dev/null); [ "${n:-0}" -ge 20 ] && break; sleep 0.05; done
  sleep 1.5  # a heartbeat or two
  victim=$(pgrep -P "$launcher" | tail -1)
  kill -STOP "$victim"
  t0=$(date +%s)
  ( sleep 60; kill -KILL "$launcher" ) >/dev/null 2>&1 &
  guard=$!
  wait "$launcher"; rc=$?
  pkill -P "$guard"; kill "$guard" 2>/dev/null
  took=$(( $(date +%s) - t0 ))
  if [ $rc -ne 0 ] && grep -q "watchdog: rank . of 2 made no progress" st.log && grep -q "Stopped responding: rank .* (pid $victim)" st.log && [ $took -lt 30 ]; then
    ok; echo "stall $i: ended after $took s: $(grep -o 'Stopped responding: [^;.]*' st.log | head -1)"
  else fail "stall $i: exit $rc after $took s: $(grep -m1 watchdog st.log)"; fi
  kill -KILL "$victim" 2>/dev/null
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
