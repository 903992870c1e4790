#!/usr/bin/env bash
# Pipeline parallelism on this machine, two measurements (BENCHMARKS.md):
#  1. The bubble: pp = 2 (one thread per rank) with m = 2, 4 and 8 micro-batches of 4
#     sequences, 1F1B and GPipe: each stage's measured idle fraction (mean over the timed
#     steps, from meshlm bench --json) against the prediction (pp - 1) / (m + pp - 1).
#  2. Activation memory and step time with each recompute setting, on one rank (2 threads),
#     and what a pp = 2, m = 4 stage holds with 1F1B and with GPipe.
#  3. The split: GPT-2 124M (bf16, T 256, 4 micro-batches of 1) at pp = 2 split 6,6, 8,4 and
#     balanced (9,3: the LM head costs 5.2 blocks), alternated twice: idle per stage, ms/step.
# Usage: bench/compare_pp.sh [build-dir] [timed-steps]
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-6}"
cd "$(dirname "$0")/.."
source bench/mpi_lib.sh pp_bench
MODEL="--n-layer 8 --n-head 8 --n-embd 256 --vocab-size 256 --seq-len 128 --micro-batch-size 4 --peak-gflops 100"
bench() {  # name np threads flags...
  local name=$1 np=$2 threads=$3
  shift 3
  on_ranks "$np" "$threads" bench $MODEL --warmup 2 --timed-steps "$STEPS" --json "$@" > "$OUT/$name.json"
}
for m in 2 4 8; do
  for sched in 1f1b gpipe; do
    bench "pp_${sched}_$m" 2 1 --pp 2 --batch-size $((4 * m)) --pp-schedule "$sched"
  done
done
for rc in none selective full; do
  bench "one_$rc" 1 2 --batch-size 16 --recompute "$rc"
  bench "pp1f1b_$rc" 2 1 --pp 2 --batch-size 16 --recompute "$rc"
  bench "ppgpipe_$rc" 2 1 --pp 2 --batch-size 16 --recompute "$rc" --pp-schedule gpipe
done
GPT2="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4 --micro-batch-size 1 --precision bf16"
for rep in 1 2; do
  for split in 6,6 8,4 balanced; do
    on_ranks 2 1 bench $GPT2 --pp 2 --pp-layers "$split" --warmup 1 --timed-steps 3 --json > "$OUT/split_${split/,/_}_$rep.json"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def r(name):
    return json.loads(open(f"{out}/{name}.json").read().strip().splitlines()[-1])
print("L8 H8 C256 T128 V256 (6.4M parameters), micro-batches of 4 x 128 tokens, pp 2, 1 thread per rank")
print("| m | schedule | stage 0 idle | stage 1 idle | predicted (pp-1)/(m+pp-1) | ms/step |")
print("|---|---|---|---|---|---|")
for m in (2, 4, 8):
    for sched in ("1f1b", "gpipe"):
        j = r(f"pp_{sched}_{m}")
        i = j["pp_idle_per_stage"]
        print(f"| {m} | {sched} | {100*i[0]:.1f}% | {100*i[1]:.1f}% | {100*j['pp_idle_predicted']:.1f}% | {j['ms_per_step']:.0f} |")
print()
print("| recompute | 1 rank: activations MiB | saved per micro-batch MiB | ms/step | pp 2 1F1B stage 0: activations MiB | pp 2 GPipe stage 0: activations MiB |")
print("|---|---|---|---|---|---|")
for rc in ("none", "selective", "full"):
    a, b, c = r(f"one_{rc}"), r(f"pp1f1b_{rc}"), r(f"ppgpipe_{rc}")
    print(f"| {rc} | {a['activation_mib']:.1f} | {a['saved_activation_mib_per_micro_batch']:.1f} | {a['ms_per_step']:.0f} | {b['activation_mib']:.1f} | {c['activation_mib']:.1f} |")
print()
print("GPT-2 124M shape, bf16, T 256, 4 micro-batches of 1, pp 2 (1 thread per rank)")
print("| split | stage 0 idle | stage 1 idle | ms/step (run 1, run 2) |")
print("|---|---|---|---|")
for split in ("6,6", "8,4", "balanced"):
    a, b = (r(f"split_{split.replace(',', '_')}_{k}") for k in (1, 2))
    i = [(x + y) / 2 for x, y in zip(a["pp_idle_per_stage"], b["pp_idle_per_stage"])]
    print(f"| {split} | {100*i[0]:.1f}% | {100*i[1]:.1f}% | {a['ms_per_step']:.0f}, {b['ms_per_step']:.0f} |")
PY
