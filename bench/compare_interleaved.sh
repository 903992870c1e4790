#!/usr/bin/env bash
# Interleaved 1F1B against 1F1B on this machine (BENCHMARKS.md): pp 2, one thread per rank, the
# L8 C256 byte-level model of compare_pp.sh, m = 2, 4 and 8 micro-batches of 4 x 128 tokens,
# schedules 1f1b, interleaved v 2 and v 4 (chunks of 4, 2 and 1 layers), alternated twice. For
# each: every stage's measured idle fraction (mean over the timed steps, meshlm bench --json)
# against the prediction (pp - 1) / (v m + pp - 1), the ms per step (both runs) and the
# activation memory of stage 0 (interleaving holds more micro-batches in flight).
# Usage: bench/compare_interleaved.sh [build-dir] [timed-steps]
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-6}"
cd "$(dirname "$0")/.."
source bench/mpi_lib.sh interleaved_bench
MODEL="--n-layer 8 --n-head 8 --n-embd 256 --vocab-size 256 --seq-len 128 --micro-batch-size 4 --peak-gflops 100"
for rep in 1 2; do
  for m in 2 4 8; do
    for sched in 1f1b v2 v4; do
      flags=(--pp-schedule 1f1b)
      [ "$sched" != 1f1b ] && flags=(--pp-schedule interleaved --pp-virtual "${sched#v}")
      on_ranks 2 1 bench $MODEL --pp 2 --batch-size $((4 * m)) "${flags[@]}" --warmup 2 --timed-steps "$STEPS" --json \
        > "$OUT/${sched}_${m}_$rep.json"
    done
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def r(name):
    return json.loads(open(f"{out}/{name}.json").read().strip().splitlines()[-1])
print("L8 H8 C256 T128 V256 (6.4M parameters), micro-batches of 4 x 128 tokens, pp 2, 1 thread per rank")
print("| m | schedule | stage 0 idle | stage 1 idle | predicted (pp-1)/(v m+pp-1) | ms/step (run 1, run 2) | stage 0 activations MiB |")
print("|---|---|---|---|---|---|---|")
for m in (2, 4, 8):
    for sched in ("1f1b", "v2", "v4"):
        a, b = r(f"{sched}_{m}_1"), r(f"{sched}_{m}_2")
        i0 = (a["pp_idle_per_stage"][0] + b["pp_idle_per_stage"][0]) / 2
        i1 = (a["pp_idle_per_stage"][1] + b["pp_idle_per_stage"][1]) / 2
        name = "1F1B" if sched == "1f1b" else f"interleaved v {sched[1]}"
        print(f"| {m} | {name} | {100*i0:.1f}% | {100*i1:.1f}% | {100*a['pp_idle_predicted']:.1f}% | "
              f"{a['ms_per_step']:.0f}, {b['ms_per_step']:.0f} | {a['activation_mib']:.1f} |")
PY
