#!/usr/bin/env bash
# Saving time of the two checkpoint formats side by side (BENCHMARKS.md): GPT-2 124M shape at
# dp 2 x tp 2 (4 ranks on this machine's cores), one step, then the end-of-run save: whole
# (gathered to rank 0, which writes) against parts (every rank its own, in parallel), twice
# each, with rank 0's peak RSS. Usage: bench/compare_checkpoint_formats.sh [build_dir]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
M="${1:-$ROOT/build}/meshlm"
WORK="$(mktemp -d /tmp/meshlm_ckpt_formats.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$M" prepare --tokenizer gpt2 --input "$ROOT/data/tinyshakespeare.txt" --output gd > /dev/null
for fmt in whole parts whole parts; do
  rm -rf r_$fmt
  OMP_NUM_THREADS=1 timeout 600 "${MPIRUN:-mpirun}" --allow-run-as-root --oversubscribe --bind-to none -np 4 "$M" train --data gd --out r_$fmt \
    --n-layer 12 --n-head 12 --n-embd 768 --seq-len 64 --max-seq-len 1024 --batch-size 4 --steps 1 --eval-batches 0 \
    --dp 2 --tp 2 --peak-gflops 100 --checkpoint-format $fmt 2>&1 | grep -E "saved|error|peak RSS"
  du -sh r_$fmt/step_000001 | cat
done
