#!/usr/bin/env bash
# Generation time against length, with and without the KV cache (BENCHMARKS.md): a random
# GPT-2-style model L4 H4 C256 with a 1024-position context, greedy, the best of 3 runs.
# Usage: bench/sample_scaling.sh [build_dir]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MESHLM="${1:-$ROOT/build}/meshlm"
WORK="$(mktemp -d /tmp/meshlm_sample_scaling.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
head -c 100000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/t.txt"
"$MESHLM" prepare --input "$WORK/t.txt" --output "$WORK/d" > /dev/null
"$MESHLM" train --data "$WORK/d" --out "$WORK/r" --steps 1 --max-seq-len 1024 --n-layer 4 --n-head 4 --n-embd 256 \
  --seq-len 64 --batch-size 2 --eval-batches 0 --peak-gflops 100 > /dev/null
best() {  # seconds, the best of 3
  local b=""
  for _ in 1 2 3; do
    s=$("$MESHLM" sample --checkpoint "$WORK/r/step_000001" --tokens "$1" --temperature 0 --no-stop --timing --prompt A $2 2>&1 >/dev/null |
        sed -n 's/.* in \([0-9.]*\) s.*/\1/p')
    b=$(awk -v a="${b:-1e9}" -v s="$s" 'BEGIN { print (s < a ? s : a) }')
  done
  echo "$b"
}
echo "| tokens | KV cache (s) | ms/token | no cache (s) | ms/token | no cache / cache |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for n in 128 256 512 1000; do
  c=$(best "$n" ""); f=$(best "$n" --no-kv-cache)
  awk -v n="$n" -v c="$c" -v f="$f" 'BEGIN { printf "| %d | %.3f | %.2f | %.2f | %.1f | %.0fx |\n", n, c, 1000 * c / n, f, 1000 * f / n, f / c }'
done
