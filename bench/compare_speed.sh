#!/usr/bin/env bash
# Speed of two meshlm binaries side by side (a refactoring must not slow a step): for the tiny
# config in fp32 and GPT-2 124M in bf16 (the shapes of bench/compare.sh), `meshlm bench` of
# binary A then binary B, alternated PAIRS times on the same machine; each run reports the
# median ms/step of its timed steps. Prints every pair's ratio B/A and their median, min and
# max (the spread says how noisy the machine was). 2 threads each.
# Usage: bench/compare_speed.sh A_MESHLM B_MESHLM [PAIRS (default 5)]
#   CONFIGS="gpt2-124M_bf16": some configs only; STEPS: timed steps per run (8); ABBA=1: every
#   other pair runs B first, so a drift within pairs does not favour either binary.
set -euo pipefail
A="$1"
B="$2"
PAIRS="${3:-5}"
declare -A SHAPE=(
  [tiny_fp32]="--n-layer 4 --n-head 4 --n-embd 256 --vocab-size 4096 --seq-len 256 --batch-size 8 --precision fp32"
  [gpt2-124M_bf16]="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 256 --max-seq-len 1024 --batch-size 4 --precision bf16"
)
grep -m1 "model name" /proc/cpuinfo
OUT="$(mktemp /tmp/meshlm_speed.XXXXXX)"
trap 'rm -f "$OUT"' EXIT
for cfg in ${CONFIGS:-tiny_fp32 gpt2-124M_bf16}; do
  for pair in $(seq "$PAIRS"); do
    order="A B"
    [ "${ABBA:-0}" = 1 ] && [ $((pair % 2)) = 0 ] && order="B A"  # alternate who goes first
    for which in $order; do
      bin=$A
      [ $which = B ] && bin=$B
      ms=$(OMP_NUM_THREADS=2 "$bin" bench ${SHAPE[$cfg]} --warmup 2 --timed-steps ${STEPS:-8} --peak-gflops 1000 --json |
           /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ms_per_step"])')
      echo "$cfg $pair $which $ms" | tee -a "$OUT"
    done
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    cfg, pair, which, ms = line.split()
    runs.setdefault(cfg, {}).setdefault(int(pair), {})[which] = float(ms)
print("| config | A ms/step (median) | B ms/step (median) | B/A per pair | median B/A | min..max |")
print("| --- | --- | --- | --- | --- | --- |")
for cfg, pairs in runs.items():
    r = [p["B"] / p["A"] for p in pairs.values()]
    a = statistics.median(p["A"] for p in pairs.values())
    b = statistics.median(p["B"] for p in pairs.values())
    print(f"| {cfg} | {a:.1f} | {b:.1f} | {' '.join(f'{x:.3f}' for x in r)} | {statistics.median(r):.3f} | {min(r):.3f}..{max(r):.3f} |")
PY
