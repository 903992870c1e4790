#!/usr/bin/env bash
# Two meshlm binaries side by side on the ~150M Llama (bf16, seq 64, global batch 4, 4 steps,
# one thread per rank), alternated twice: each rank's peak RSS (/usr/bin/time) and the median
# step time of steps 2-4. For a change's before/after (BENCHMARKS.md: ZeRO-1's reduce-scatter).
# Usage: bench/compare_memory.sh OLD_MESHLM NEW_MESHLM NP [train flags...]   e.g. ... 2 --dp 2 --zero 1
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OLD="$1" NEW="$2" NP="$3"
shift 3
WORK="$(mktemp -d /tmp/meshlm_compare_memory.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
DATA="$ROOT/data/shakespeare_gpt2"
[ -f "$DATA/train_000000.bin" ] || "$NEW" prepare --tokenizer gpt2 --input "$ROOT/data/tinyshakespeare.txt" --output "$DATA" >/dev/null
lscpu | grep -m1 "Model name" || true
for round in 1 2; do
  for which in old new; do
    bin=$OLD
    [ "$which" = new ] && bin=$NEW
    name="${which}_$round"
    OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$NP" \
      sh -c 'exec /usr/bin/time -f "%M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$WORK/$name.rss" "$bin" train \
      --config "$ROOT/configs/llama_150m.toml" --data "$DATA" --seq-len 64 --batch-size 4 --precision bf16 \
      --eval-batches 0 --peak-gflops 100 --plots 0 --steps 4 --checkpoints 0 --out "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1
    /usr/bin/python3 - "$WORK" "$name" <<'PY'
import glob, json, statistics, sys
work, name = sys.argv[1], sys.argv[2]
rss = [int(open(f).read()) / 1024 for f in sorted(glob.glob(f"{work}/{name}.rss.*"))]
m = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl") if '"loss"' in l]
print(f"{name}: peak RSS {' / '.join(f'{r:.0f}' for r in rss)} MiB, step {statistics.median(d['ms_per_step'] for d in m[1:]):.0f} ms")
PY
  done
done
