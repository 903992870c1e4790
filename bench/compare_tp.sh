#!/usr/bin/env bash
# Tensor parallelism on this machine: the same model and global batch on 1 rank (2 threads),
# tp = 2 (1 thread per rank) and dp = 2 (1 thread per rank), alternated twice in one
# invocation: median ms/step, rank 0's resident memory during training, and the bytes rank 0
# all-reduces per step for tensor parallelism (tp_mib in metrics.jsonl) against the formula:
# fp32 N x C all-reduces, 4 per layer (2 forward, 2 backward) plus 2 for the vocabulary-parallel
# embedding (forward) and LM head (backward), and 3 N-vectors for the cross-entropy:
# (16 L + 8) N C + 12 N bytes.
# Usage: bench/compare_tp.sh [build-dir] [steps]
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-10}"
cd "$(dirname "$0")/.."
source bench/mpi_lib.sh tp_bench
byte_data
MODEL="--n-layer 6 --n-head 6 --n-embd 384 --vocab-size 256 --seq-len 128 --batch-size 8 --eval-batches 0 --warmup-steps 0 --peak-gflops 100 --checkpoints 0"
run() {  # name np threads flags...
  local name=$1 np=$2 threads=$3
  shift 3
  on_ranks "$np" "$threads" train --data "$DATA" --out "$OUT/$name" --steps "$STEPS" $MODEL "$@" > "$OUT/$name.log"
}
for rep in 1 2; do
  run one$rep 1 2
  run tp$rep 2 1 --tp 2
  run dp$rep 2 1 --dp 2
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def steps(name):
    return [d for d in map(json.loads, open(f"{out}/{name}/metrics.jsonl")) if "loss" in d][2:]
def med(name, key):
    return statistics.median(d[key] for d in steps(name))
L, N, C = 6, 8 * 128, 384
print("6 x 384 model (10.7M parameters), B8 T128, same global batch:")
for rep in (1, 2):
    print(f"  run {rep}: 1 rank {med(f'one{rep}', 'ms_per_step'):5.0f} ms/step | tp 2 {med(f'tp{rep}', 'ms_per_step'):5.0f} | dp 2 {med(f'dp{rep}', 'ms_per_step'):5.0f}")
for name in ("one1", "tp1", "dp1"):
    print(f"  {name[:-1]:4s}: rank 0 resident memory {med(name, 'rss_mib'):6.1f} MiB")
print(f"  tp 2 all-reduce payload per step: {med('tp1', 'tp_mib'):.4f} MiB, formula (16 L + 8) N C + 12 N = {((16 * L + 8) * N * C + 12 * N) / 2**20:.4f} MiB")
PY
