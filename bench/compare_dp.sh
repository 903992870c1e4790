#!/usr/bin/env bash
# Data parallelism on this machine, side by side in one invocation:
#  1. dp = 2 with gradient buckets reduced during backward (overlap 1) against one reduction
#     after backward (overlap 0): median ms/step and the reduction time left exposed
#     (comm_wait_ms in metrics.jsonl: finish() waiting), hence the fraction hidden;
#  2. resident memory per rank with and without ZeRO-1 against the bytes/parameter formula.
# One thread per rank (2 ranks on the 2 cores). Usage: bench/compare_dp.sh [build-dir] [steps]
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-12}"
cd "$(dirname "$0")/.."
source bench/mpi_lib.sh dp_bench
byte_data
MODEL="--n-layer 6 --n-head 6 --n-embd 384 --vocab-size 256 --seq-len 128 --batch-size 8 --eval-batches 0 --warmup-steps 0 --peak-gflops 100"
run() {  # name np flags...
  local name=$1 np=$2
  shift 2
  on_ranks "$np" $(( 2 / np > 0 ? 2 / np : 1 )) train --data "$DATA" --out "$OUT/$name" --steps "$STEPS" --dp "$np" $MODEL "$@" > "$OUT/$name.log"
  grep -E "^(layout|memory)" "$OUT/$name.log" || true
}
for rep in 1 2; do  # alternate, twice
  run overlap$rep 2 --overlap 1
  run after$rep 2 --overlap 0
done
run zero0 2 --zero 0
run zero1 2 --zero 1
run dp1 1
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def steps(name):
    return [d for d in map(json.loads, open(f"{out}/{name}/metrics.jsonl")) if "loss" in d][2:]
def med(name, key):
    return statistics.median(d[key] for d in steps(name))
print("dp = 2, 6 x 384 model (10.7M parameters, 43 MB of fp32 gradients), B8 T128:")
for rep in (1, 2):
    o, a = f"overlap{rep}", f"after{rep}"
    mo, ma = med(o, "ms_per_step"), med(a, "ms_per_step")
    wo, wa = med(o, "comm_wait_ms"), med(a, "comm_wait_ms")
    print(f"  run {rep}: overlapped {mo:6.0f} ms/step ({wo:5.1f} ms exposed) | after backward {ma:6.0f} ms/step "
          f"({wa:5.1f} ms exposed) | hidden {100 * (1 - wo / wa):4.0f}% of the reduction, step x{ma / mo:.2f}")
print(f"  dp = 1 (2 threads, same global batch): {med('dp1', 'ms_per_step'):6.0f} ms/step")
for z in ("zero0", "zero1"):
    print(f"  {z}: resident memory of rank 0 during training {med(z, 'rss_mib'):7.1f} MiB")
PY
