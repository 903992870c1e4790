#!/usr/bin/env bash
# The Llama demo against the GPT-2 demo on the demo corpus (tiny-shakespeare, the demo's
# 2048-token BPE), the same tokens (1000 steps of 32 x 64), schedule, precision and
# non-embedding parameter count (configs/demo.toml, configs/llama_demo.toml), two seeds each,
# alternated in one invocation. Prints the validation loss in nats per byte at the end of each
# run, its mean over the seeds, and the wall time. Usage: bench/compare_llama_demo.sh [build-dir] [seeds...]
set -euo pipefail
BUILD="${1:-build}"
shift $(( $# > 0 ? 1 : 0 ))
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1337 42)
cd "$(dirname "$0")/.."
TOK=data/shakespeare_bpe2048.json
DATA=data/shakespeare_bpe2048
[ -f "$TOK" ] || "$BUILD/meshlm" tokenizer train --vocab-size 2048 --input data/tinyshakespeare.txt --output "$TOK" >/dev/null
[ -f "$DATA/manifest.json" ] || "$BUILD/meshlm" prepare --tokenizer "$TOK" --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
OUT=$(mktemp -d /tmp/meshlm_llama_demo.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
for seed in "${SEEDS[@]}"; do
  for cfg in demo llama_demo; do
    start=$(date +%s.%N)
    "$BUILD/meshlm" train --config "configs/$cfg.toml" --data "$DATA" --out "$OUT/${cfg}_$seed" --seed "$seed" \
      --checkpoints 0 > "$OUT/${cfg}_$seed.log"
    echo "$(echo "$(date +%s.%N) - $start" | bc)" > "$OUT/${cfg}_$seed.time"
    grep -E "^model" "$OUT/${cfg}_$seed.log" | head -1
    echo "$cfg seed $seed: $(grep -E '^eval' "$OUT/${cfg}_$seed.log" | tail -1)"
  done
done
/usr/bin/python3 - "$OUT" "${SEEDS[@]}" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
print("| model | seed | val loss (nats/byte) | val loss (nats/token) | wall s |")
print("| --- | ---: | ---: | ---: | ---: |")
for cfg in ("demo", "llama_demo"):
    per_byte = []
    for s in seeds:
        ev = [json.loads(l) for l in open(f"{out}/{cfg}_{s}/metrics.jsonl") if "val_loss" in l][-1]
        wall = float(open(f"{out}/{cfg}_{s}.time").read())
        per_byte.append(ev["val_loss_per_byte"])
        print(f"| {cfg} | {s} | {ev['val_loss_per_byte']:.4f} | {ev['val_loss']:.4f} | {wall:.0f} |")
    print(f"| {cfg} | mean | {statistics.mean(per_byte):.4f} | | |")
PY
