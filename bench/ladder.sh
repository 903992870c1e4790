#!/usr/bin/env bash
# The precision ladder of BENCHMARKS.md (issue 19): a 10.7M-parameter GPT-2 (6 layers, C 384,
# byte-level vocabulary) trained for 2000 steps of 4 x 128 tokens (about one epoch of the
# tiny-shakespeare train split) in every entry of `meshlm ladder`'s default list, fp32 and bf16
# with two seeds each. About two hours on 2 cores. Interrupted, the same command continues.
# Usage: bench/ladder.sh [build-dir] [out-dir]
set -euo pipefail
BUILD="${1:-build}"
OUT="${2:-runs/ladder}"
cd "$(dirname "$0")/.."
DATA=data/shakespeare_bytes
[ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
"$BUILD/meshlm" ladder --data "$DATA" --n-layer 6 --n-head 6 --n-embd 384 --vocab-size 256 --seq-len 128 \
  --batch-size 4 --steps 2000 --warmup-steps 100 --lr 1e-3 --min-lr 1e-4 --eval-batches 128 \
  --save-every 500 --keep-last 1 --seeds 2 --out "$OUT"
lscpu | grep -m1 "Model name"
