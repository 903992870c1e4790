#!/usr/bin/env bash
# Trains a GPT-2 124M-shaped model (L12, H12, C768, V50257, T256, B4) in fp32 for a few steps
# on the byte-level tiny-shakespeare shards (ids < 256 are valid GPT-2 ids) and reports the
# median ms/step and tokens/s over the steps after the first, and the peak RSS.
# Usage: bench/train_gpt2_124m.sh [build-dir] [steps]
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-8}"
cd "$(dirname "$0")/.."
DATA=data/shakespeare_bytes
[ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
OUT=$(mktemp -d /tmp/meshlm_gpt2_124m.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
"$BUILD/meshlm" train --data "$DATA" --out "$OUT" --n-layer 12 --n-head 12 --n-embd 768 \
  --vocab-size 50257 --max-seq-len 1024 --seq-len 256 --batch-size 4 --steps "$STEPS" \
  --warmup-steps 0 --lr 6e-4 --eval-batches 0 | tee "$OUT/log" | grep -E "^(model|compute|step|done)"
python3 - "$OUT/metrics.jsonl" "$OUT/log" <<'PY'
import json, re, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]
ms = statistics.median(s["ms_per_step"] for s in steps)
tps = statistics.median(s["tokens_per_s"] for s in steps)
mfu = statistics.median(s["mfu"] for s in steps)
rss = re.search(r"peak RSS (\d+) MiB", open(sys.argv[2]).read()).group(1)
print(f"gpt2-124M fp32 B4 T256: median {ms:.0f} ms/step, {tps:.0f} tokens/s, MFU {100*mfu:.0f}% "
      f"(over {len(steps)} steps after the first), peak RSS {rss} MiB")
PY
