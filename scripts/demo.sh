#!/usr/bin/env bash
# The demo behind `make demo`: prepares the bundled tiny-shakespeare corpus as byte-level
# shards, trains the small default model of configs/demo.toml (about 3 minutes on 2 cores),
# saves a checkpoint and prints a generated sample. Usage: scripts/demo.sh path/to/meshlm
set -euo pipefail
MESHLM="${1:-build/meshlm}"
cd "$(dirname "$0")/.."
start=$(date +%s)

DATA=data/shakespeare_bytes
RUN=runs/demo
if [ ! -f "$DATA/train_000000.bin" ]; then
  "$MESHLM" prepare --tokenizer bytes --input data/tinyshakespeare.txt --output "$DATA"
fi
rm -rf "$RUN"
echo "== training (configs/demo.toml; Ctrl-C stops early and still saves a checkpoint) =="
"$MESHLM" train --config configs/demo.toml --data "$DATA" --out "$RUN"
ckpt=$(ls -d "$RUN"/step_* | sort | tail -1)
echo
echo "== sample from $ckpt =="
"$MESHLM" sample --checkpoint "$ckpt" --prompt "ROMEO:" --tokens 400 --temperature 0.8 --top-k 40 --seed 7
echo
val=$(grep val_loss "$RUN/metrics.jsonl" | tail -1)
echo "== demo done in $(( $(date +%s) - start )) s =="
echo "final eval:  $val  (nats per byte; ln 256 = 5.55 is chance)"
echo "metrics:     $RUN/metrics.jsonl"
echo "checkpoint:  $ckpt  (model.safetensors loads in Hugging Face's GPT2LMHeadModel)"
echo "more:        $MESHLM sample --checkpoint $ckpt --prompt 'KING HENRY:'"
