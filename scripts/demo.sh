#!/usr/bin/env bash
# The demo behind `make demo`: trains a byte-level BPE tokenizer on the bundled tiny-shakespeare
# corpus (or reuses the one trained before), prepares train/val token shards with it, trains the
# small default model of configs/demo.toml (about a minute on 2 cores, bf16), saves a checkpoint
# and prints a generated sample. Usage: scripts/demo.sh path/to/meshlm
set -euo pipefail
MESHLM="${1:-build/meshlm}"
cd "$(dirname "$0")/.."
start=$(date +%s)

TOK=data/shakespeare_bpe2048.json
DATA=data/shakespeare_bpe2048
RUN=runs/demo
if [ ! -f "$TOK" ]; then
  echo "== training a 2048-token BPE vocabulary on data/tinyshakespeare.txt =="
  "$MESHLM" tokenizer train --vocab-size 2048 --input data/tinyshakespeare.txt --output "$TOK"
fi
if [ ! -f "$DATA/manifest.json" ] || [ "$TOK" -nt "$DATA/manifest.json" ]; then
  "$MESHLM" prepare --tokenizer "$TOK" --input data/tinyshakespeare.txt --output "$DATA"
fi
echo "== training (configs/demo.toml; Ctrl-C stops early and still saves a checkpoint) =="
"$MESHLM" train --config configs/demo.toml --data "$DATA" --out "$RUN" --overwrite
ckpt=$(ls -d "$RUN"/step_* | sort | tail -1)
echo
echo "== sample from $ckpt =="
"$MESHLM" sample --checkpoint "$ckpt" --prompt "ROMEO:" --tokens 150 --temperature 0.8 --top-k 40 --seed 7
echo
python3 - "$RUN/metrics.jsonl" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "val_loss" in l][-1]
print(f"== demo done in {sys.argv[2]} s ==")
print(f"val loss:    {ev['val_loss']:.3f} nats/token, {ev['val_loss_per_byte']:.3f} nats/byte "
      f"(step {ev['step']}; a uniform guess over bytes is ln 256 = 5.55 nats/byte)")
PY
echo "metrics:     $RUN/metrics.jsonl (loss curves: $RUN/loss.png, $RUN/loss.svg)"
echo "checkpoint:  $ckpt  (Hugging Face GPT-2 names and a config.json: from_pretrained reads it)"
echo "more:        $MESHLM sample --checkpoint $ckpt --prompt 'KING HENRY:'"
