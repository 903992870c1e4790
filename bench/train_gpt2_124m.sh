#!/usr/bin/env bash
# Trains a GPT-2 124M-shaped model (L12, H12, C768, V50257, T256, B4) for a few steps in each
# given precision, one after the other in one invocation (so a ratio holds even when the shared
# machine's speed drifts), on the byte-level tiny-shakespeare shards (ids < 256 are valid GPT-2
# ids). Reports per precision the median ms/step, tokens/s and MFU over the steps after the
# first, the peak RSS, and each precision's speed-up over the first one.
# Usage: bench/train_gpt2_124m.sh [build-dir] [steps] [precision ...]   (default: fp32 bf16)
set -euo pipefail
BUILD="${1:-build}"
STEPS="${2:-8}"
shift $(( $# > 2 ? 2 : $# ))
PRECISIONS=("$@")
[ ${#PRECISIONS[@]} -gt 0 ] || PRECISIONS=(fp32 bf16)
cd "$(dirname "$0")/.."
DATA=data/shakespeare_bytes
[ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
OUT=$(mktemp -d /tmp/meshlm_gpt2_124m.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
for p in "${PRECISIONS[@]}"; do
  # --save-every 0 and a large --steps would still save at the end; the run directory is
  # temporary, so the end-of-run checkpoint is written and thrown away (not timed).
  "$BUILD/meshlm" train --data "$DATA" --out "$OUT/$p" --n-layer 12 --n-head 12 --n-embd 768 \
    --vocab-size 50257 --max-seq-len 1024 --seq-len 256 --batch-size 4 --steps "$STEPS" \
    --warmup-steps 0 --lr 6e-4 --eval-batches 0 --precision "$p" > "$OUT/$p.log"
  grep -E "^(model|compute|numerics|done)" "$OUT/$p.log"
done
python3 - "$OUT" "${PRECISIONS[@]}" <<'PY'
import json, re, statistics, sys
out, precisions = sys.argv[1], sys.argv[2:]
base = None
for p in precisions:
    steps = [json.loads(l) for l in open(f"{out}/{p}/metrics.jsonl") if '"loss"' in l][1:]
    ms = statistics.median(s["ms_per_step"] for s in steps)
    tps = statistics.median(s["tokens_per_s"] for s in steps)
    mfu = statistics.median(s["mfu"] for s in steps)
    rss = re.search(r"peak RSS (\d+) MiB", open(f"{out}/{p}.log").read()).group(1)
    base = base or ms
    label = p + (" (simulated)" if p == "fp8" else "")
    print(f"gpt2-124M {label:16s} B4 T256: median {ms:5.0f} ms/step, {tps:4.0f} tokens/s, MFU {100*mfu:3.0f}% "
          f"(over {len(steps)} steps after the first), peak RSS {rss} MiB, speed-up x{base/ms:.2f} vs {precisions[0]}")
PY
