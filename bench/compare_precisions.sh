#!/usr/bin/env bash
# The low-precision acceptance run: the demo model and data (configs/demo.toml, the 2048-token
# BPE shards of scripts/demo.sh), same seeds and steps, in every precision mode; prints each
# mode's final val loss and its difference from fp32, and the wall time. fp16-pure is run as
# the naive recipe (AdamW eps 1e-8, which is 0 in fp16) and, as its usual repair, with eps 1e-4
# (beside fp32 with eps 1e-4, to separate the optimizer change from the precision).
# Usage: bench/compare_precisions.sh [build-dir] [extra train flags...]
set -euo pipefail
BUILD="${1:-build}"
shift || true
cd "$(dirname "$0")/.."
TOK=data/shakespeare_bpe2048.json
DATA=data/shakespeare_bpe2048
[ -f "$TOK" ] || "$BUILD/meshlm" tokenizer train --vocab-size 2048 --input data/tinyshakespeare.txt --output "$TOK" >/dev/null
[ -f "$DATA/manifest.json" ] || "$BUILD/meshlm" prepare --tokenizer "$TOK" --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
OUT=${OUT:-$(mktemp -d /tmp/meshlm_precisions.XXXXXX)}
mkdir -p "$OUT"
run() {  # name, flags...
  local name=$1
  shift
  local t0=$(date +%s)
  if "$BUILD/meshlm" train --config configs/demo.toml --data "$DATA" --out "$OUT/$name" --overwrite \
       --numerics-report 50 "$@" > "$OUT/$name.log" 2>&1; then
    echo "$name: done in $(( $(date +%s) - t0 )) s"
  else
    echo "$name: FAILED after $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/$name.log")"
  fi
}
run fp32 --precision fp32 "$@"
run bf16 --precision bf16 "$@"
run fp16 --precision fp16 "$@"
run fp8 --precision fp8 "$@"
run fp16-pure --precision fp16-pure "$@"
run fp16-pure-eps1e-4 --precision fp16-pure --eps 1e-4 "$@"
run fp32-eps1e-4 --precision fp32 --eps 1e-4 "$@"   # the same optimizer change, in fp32
run bf16-sr-no-master --precision bf16 --master-weights 0 "$@"
/usr/bin/python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def final(name):
    p = f"{out}/{name}/metrics.jsonl"
    if not os.path.exists(p): return None, None, None
    lines = [json.loads(l) for l in open(p)]
    ev = [l for l in lines if "val_loss" in l]
    steps = [l for l in lines if "loss" in l]
    skipped = sum(1 for l in steps if l.get("skipped"))
    return (ev[-1] if ev else None), (steps[-1]["step"] if steps else 0), skipped
base, _, _ = final("fp32")
print(f"{'mode':22s} {'steps':>5s} {'val loss':>9s} {'nats/byte':>9s} {'vs fp32':>8s} {'skipped':>7s}")
for name in ["fp32", "bf16", "fp16", "fp8", "fp16-pure", "fp16-pure-eps1e-4", "fp32-eps1e-4", "bf16-sr-no-master"]:
    ev, last, skipped = final(name)
    if ev is None:
        print(f"{name:22s} {last:5d}   diverged (no evaluation; see {out}/{name}.log)")
        continue
    rel = (ev["val_loss"] / base["val_loss"] - 1) * 100 if base else float("nan")
    print(f"{name:22s} {last:5d} {ev['val_loss']:9.4f} {ev.get('val_loss_per_byte', float('nan')):9.4f} {rel:+7.2f}% {skipped:7d}")
PY
"$BUILD/meshlm" plot "$OUT"/fp32 "$OUT"/bf16 "$OUT"/fp16 "$OUT"/fp8 "$OUT"/bf16-sr-no-master --out "$OUT/precisions.png" \
  --title "precision modes, configs/demo.toml" || true
echo "runs, logs and numerics reports: $OUT; the loss curves overlaid: $OUT/precisions.png"

