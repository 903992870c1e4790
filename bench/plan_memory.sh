#!/usr/bin/env bash
# The planner's memory per rank against what the trainer holds and against resident memory
# (BENCHMARKS.md; issue 18): GPT-2 124M (T 128, global batch 8) in layouts of 1 and 2 ranks
# (micro-batches, recompute, ZeRO stages, tp, pp, interleaving, fp32 and bf16). For each, one
# process per layout: `meshlm plan --predict` (the predicted MiB of rank 0),
# `meshlm bench --json` (rank 0's held buffers and peak RSS), and an empty process's RSS (the
# same bench on a model of one tiny block) subtracted from the RSS. Every run is given its peak
# (--peak-gflops) so that none measures it: that measurement's transient 2048^3 GEMM buffers
# (~100 MiB) would be the empty process's peak RSS and not a baseline.
# Usage: bench/plan_memory.sh [build-dir]
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
source bench/mpi_lib.sh plan_memory
MODEL="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 128 --batch-size 8"
layouts=(
  "1|--micro-batch-size 8" "1|--micro-batch-size 2" "1|--micro-batch-size 2 --recompute selective"
  "1|--micro-batch-size 8 --recompute full" "1|--micro-batch-size 4 --precision bf16"
  "1|--micro-batch-size 1 --precision bf16 --recompute selective"
  "2|--dp 2 --micro-batch-size 4" "2|--dp 2 --micro-batch-size 2 --zero 1" "2|--dp 2 --micro-batch-size 4 --zero 2"
  "2|--dp 2 --micro-batch-size 4 --zero 3" "2|--dp 2 --micro-batch-size 4 --zero 3 --precision bf16"
  "2|--tp 2 --micro-batch-size 4" "2|--tp 2 --micro-batch-size 8 --sequence-parallel 1"
  "2|--pp 2 --micro-batch-size 2" "2|--pp 2 --micro-batch-size 1 --pp-schedule gpipe"
  "2|--pp 2 --micro-batch-size 2 --pp-schedule interleaved" "2|--pp 2 --micro-batch-size 1 --recompute full --precision bf16"
)
empty() {  # np: an empty process's resident MiB (one tiny block, same runtime)
  on_ranks "$1" 1 bench --n-layer 1 --n-head 1 --n-embd 8 --vocab-size 256 --seq-len 8 --batch-size "$1" --dp "$1" \
    --warmup 1 --timed-steps 1 --peak-gflops 100 --json | tail -1
}
empty 1 > "$OUT/empty1.json"
empty 2 > "$OUT/empty2.json"
i=0
for entry in "${layouts[@]}"; do
  np=${entry%%|*} flags=${entry#*|}
  # shellcheck disable=SC2086
  "$BUILD/meshlm" plan $MODEL $flags --predict --machine tests/data/machine_profile.json | sed -n 2p > "$OUT/pred$i.txt"
  # shellcheck disable=SC2086
  on_ranks "$np" $((3 - np)) bench $MODEL $flags --warmup 1 --timed-steps 1 --peak-gflops 100 --json | tail -1 > "$OUT/run$i.json"
  echo "$np|$flags" > "$OUT/what$i.txt"
  i=$((i + 1))
done
/usr/bin/python3 - "$OUT" "$i" <<'PY'
import json, re, sys
out, n = sys.argv[1], int(sys.argv[2])
empty = {k: json.load(open(f"{out}/empty{k}.json"))["peak_rss_mib"] for k in (1, 2)}
print(f"empty process: {empty[1]:.0f} MiB (1 rank), {empty[2]:.0f} MiB (2 ranks, rank 0)\n")
print("| ranks | layout | predicted MiB | held MiB | error | RSS - empty MiB | error |")
print("|---|---|---:|---:|---:|---:|---:|")
worst_held = worst_rss = 0
for i in range(n):
    np, flags = open(f"{out}/what{i}.txt").read().strip().split("|")
    pred = float(re.search(r"rank 0 ([0-9]+) MiB", open(f"{out}/pred{i}.txt").read()).group(1))
    j = json.load(open(f"{out}/run{i}.json"))
    held, rss = j["held_mib"], j["peak_rss_mib"] - empty[int(np)]
    eh, er = (pred - held) / held, (pred - rss) / rss
    worst_held, worst_rss = max(worst_held, abs(eh)), max(worst_rss, abs(er))
    print(f"| {np} | {flags} | {pred:.0f} | {held:.0f} | {100 * eh:+.1f}% | {rss:.0f} | {100 * er:+.1f}% |")
print(f"\nworst: {100 * worst_held:.1f}% against the held buffers, {100 * worst_rss:.1f}% against resident memory less an empty process's")
PY
