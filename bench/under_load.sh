#!/usr/bin/env bash
# Eval and training under load: two other threads spin on the machine's cores while meshlm
# runs with its default thread settings, with --threads 1 and with --threads 2, alternated,
# REPS times each; prints the median seconds of each and default / best(1, 2) (issue 14 asks
# for at most 1.5). Usage: bench/under_load.sh path/to/meshlm [REPS]
set -euo pipefail
MESHLM="$(realpath "$1")"
REPS="${2:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/meshlm_load.XXXXXX)"
spinners=()
cleanup() { for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; 2 spinning threads"
head -c 300000 "$ROOT/data/tinyshakespeare.txt" > small.txt
"$MESHLM" prepare --tokenizer bytes --input small.txt --output data >/dev/null
"$MESHLM" train --data data --out tiny --n-layer 2 --n-head 2 --n-embd 64 --seq-len 64 --batch-size 8 --steps 2 \
  --eval-batches 0 --peak-gflops 100 >/dev/null
for _ in 1 2; do bash -c 'while :; do :; done' & spinners+=($!); done
sleep 0.5
secs() { local s; s=$(date +%s.%N); env -u OMP_NUM_THREADS "$@" >/dev/null 2>&1; /usr/bin/python3 -c "import time; print(time.time() - $s)"; }
declare -A t
for rep in $(seq "$REPS"); do
  for mode in default 1 2; do
    flag=(); [ "$mode" = default ] || flag=(--threads "$mode")
    t[eval,$mode]+="$(secs "$MESHLM" eval --checkpoint tiny/step_000002 --data data --batches 1000 "${flag[@]}") "
    t[train,$mode]+="$(secs "$MESHLM" train --data data --out "tr_$mode" --n-layer 4 --n-head 4 --n-embd 256 --seq-len 128 \
      --batch-size 8 --steps 30 --eval-batches 0 --checkpoints 0 --peak-gflops 100 --overwrite "${flag[@]}") "
  done
done
for job in eval train; do
  /usr/bin/python3 - "$job" "${t[$job,default]}" "${t[$job,1]}" "${t[$job,2]}" <<'PY'
import statistics, sys
job, *runs = sys.argv[1:]
d, one, two = (statistics.median(map(float, r.split())) for r in runs)
print(f"{job:5s}  default {d:6.2f} s   --threads 1 {one:6.2f} s   --threads 2 {two:6.2f} s   default / best = {d / min(one, two):.2f}")
PY
done
