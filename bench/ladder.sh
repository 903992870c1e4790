#!/usr/bin/env bash
# The precision ladder of BENCHMARKS.md (issue 19): a 10.8M-parameter GPT-2 (6 layers, C 384,
# byte-level vocabulary) trained for 1000 steps of 8 x 128 tokens (one epoch of the
# tiny-shakespeare train split), the learning rate annealed to 1% of its peak so the final
# weights carry little of the last steps' noise, validated on the whole val split, in every
# entry of bench/ladder_entries.txt (fp32 with two seeds, bf16 with three). About two hours on
# 2 cores. Interrupted, the same command continues where it stopped.
# Usage: bench/ladder.sh [build-dir] [out-dir]
set -euo pipefail
BUILD="${1:-build}"
OUT="${2:-runs/ladder}"
cd "$(dirname "$0")/.."
DATA=data/shakespeare_bytes
[ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
lscpu | grep -m1 "Model name"
"$BUILD/meshlm" ladder --data "$DATA" --n-layer 6 --n-head 6 --n-embd 384 --vocab-size 256 --seq-len 128 \
  --batch-size 8 --steps 1000 --warmup-steps 100 --lr 1e-3 --min-lr 1e-5 --eval-batches 108 \
  --save-every 250 --keep-last 1 --entries bench/ladder_entries.txt --out "$OUT"
