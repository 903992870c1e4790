#!/usr/bin/env bash
# The demo model trained on bytes (configs/demo_bytes.toml) and on a 2048-token BPE vocabulary
# (configs/demo.toml), one after the other, each for about the same wall time; prints the
# validation loss of each in nats per byte, the measure that compares tokenizers.
# Usage: bench/compare_demo_tokenizers.sh [build-dir]
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
M="$BUILD/meshlm"
OUT=$(mktemp -d /tmp/meshlm_demo_cmp.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
"$M" prepare --tokenizer bytes --input data/tinyshakespeare.txt --output "$OUT/bytes" >/dev/null
"$M" tokenizer train --vocab-size 2048 --input data/tinyshakespeare.txt --output "$OUT/tok.json" >/dev/null
"$M" prepare --tokenizer "$OUT/tok.json" --input data/tinyshakespeare.txt --output "$OUT/bpe" >/dev/null
for run in bytes:configs/demo_bytes.toml bpe:configs/demo.toml; do
  name=${run%%:*}; cfg=${run#*:}
  t0=$(date +%s.%N)
  "$M" train --config "$cfg" --data "$OUT/$name" --out "$OUT/run_$name" --precision fp32 >/dev/null  # the figures in BENCHMARKS.md are fp32
  t1=$(date +%s.%N)
  python3 - "$OUT/run_$name/metrics.jsonl" "$name" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
ev = [l for l in lines if "val_loss" in l][-1]
steps = [l for l in lines if "loss" in l]
tps = sorted(l["tokens_per_s"] for l in steps)[len(steps) // 2]
print(f"{sys.argv[2]:>5}: {len(steps)} steps in {float(sys.argv[3]):.0f} s (median {tps:.0f} tokens/s), "
      f"val {ev['val_loss']:.3f} nats/token = {ev['val_loss_per_byte']:.3f} nats/byte")
PY
done
