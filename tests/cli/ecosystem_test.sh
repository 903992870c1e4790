#!/usr/bin/env bash
# The everyday ergonomics of the meshlm command (issue "meshlm in the ecosystem"), one check
# per item: typed boolean flags, TOML booleans and sections, grouped --help, bench refusing
# train-only flags, an unknown command in one line, JSONL and nanoGPT data on-ramps, eval
# --json naming its split, vocab_size from the manifest, --resume RUN_DIR / latest, keep_last,
# the schedule warning, plots (PNG, SVG as XML, meshlm plot), TensorBoard files, import and
# export both ways, and the layout from the job: one process resumes a dp2 x tp2 x pp2
# checkpoint, mpirun's --dp defaults to the ranks / (tp x pp).
# Usage: ecosystem_test.sh path/to/meshlm repo_root [mpirun]
set -uo pipefail
MESHLM="$1"
ROOT="$2"
MPIRUN="${3:-}"
source "$(dirname "$0")/helpers.sh" eco
export OMP_NUM_THREADS=1
config_value() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['config'][sys.argv[2]])" "$1" "$2"; }

head -c 60000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
"$MESHLM" prepare --input "$WORK/small.txt" --output "$WORK/data" >/dev/null || { echo "prepare failed"; exit 1; }
TINY=(--n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 --batch-size 4 --eval-batches 1 --peak-gflops 100)

# ---- flags and config ----
for sub in export import plot; do expect_ok "help $sub" "$MESHLM" "$sub" --help; done
expect_ok "bare boolean" "$MESHLM" train --data "$WORK/data" --out "$WORK/b1" --steps 1 "${TINY[@]}" --shuffle --profile false
[ "$(config_value "$WORK/b1/step_000001/trainer.json" shuffle)" = 1 ] &&
  [ "$(config_value "$WORK/b1/step_000001/trainer.json" profile)" = 0 ] && ok || fail "--shuffle bare is 1, --profile false is 0"
expect_ok "boolean 1/0 as before" "$MESHLM" train --data "$WORK/data" --out "$WORK/b2" --steps 1 "${TINY[@]}" --shuffle 1 --overlap 0
expect_error "bad boolean" "not a boolean" "$MESHLM" train --data "$WORK/data" --out "$WORK/b3" --steps 1 --shuffle maybe
printf '[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\n[data]\nseq_len = 32\nbatch_size = 4\nshuffle = true\n[logging]\neval_batches = 1\npeak_gflops = 100.0\n' > "$WORK/sections.toml"
expect_ok "TOML sections and booleans" "$MESHLM" train --config "$WORK/sections.toml" --data "$WORK/data" --out "$WORK/b4" --steps 1
[ "$(config_value "$WORK/b4/step_000001/trainer.json" shuffle)" = 1 ] && ok || fail "TOML shuffle = true"
"$MESHLM" train --help > "$WORK/help.txt"
for g in Model: Data: Optimizer: Precision: "Parallel layout:" Checkpoints: Logging:; do
  grep -q "^$g" "$WORK/help.txt" && ok || fail "train --help has the group $g"
done
grep -q -- "--shuffle \[BOOL\]" "$WORK/help.txt" && grep -q -- "--n-layer INT .*\[default: 4\]" "$WORK/help.txt" && ok ||
  fail "train --help shows types and defaults"
expect_error "bench refuses --steps" "steps" "$MESHLM" bench --steps 5
expect_error "unknown command" "unknown command 'planner'" "$MESHLM" planner --help

# ---- data on-ramps ----
/usr/bin/python3 - "$WORK/small.txt" "$WORK/docs.jsonl" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    for i in range(0, len(text), 2000):
        f.write(json.dumps({"id": i, "content": text[i:i + 2000]}) + "\n")
PY
expect_ok "prepare JSONL" "$MESHLM" prepare --tokenizer gpt2 --input "$WORK/docs.jsonl" --jsonl-key content --output "$WORK/jsonl"
grep -q '"documents": 30' "$WORK/jsonl/manifest.json" && ok || fail "JSONL: one document per record (30)"
expect_error "JSONL without the key" "no string field 'text'" "$MESHLM" prepare --input "$WORK/docs.jsonl" --output "$WORK/jsonl2"
mkdir -p "$WORK/nano"
/usr/bin/python3 -c "
import numpy as np
np.arange(5000, dtype=np.uint16).tofile('$WORK/nano/train.bin'); np.arange(600, dtype=np.uint16).tofile('$WORK/nano/val.bin')"
expect_error "headerless .bin refused" "meshlm prepare --headerless" "$MESHLM" train --data "$WORK/nano" --out "$WORK/n1" --steps 1
expect_ok "headerless .bin converted" "$MESHLM" prepare --headerless "$WORK/nano/train.bin" "$WORK/nano/val.bin" --tokenizer gpt2 --output "$WORK/nano_shards"
# vocab_size defaults to the manifest's (50257 here)
expect_ok "train on converted data" "$MESHLM" train --data "$WORK/nano_shards" --out "$WORK/n2" --steps 1 "${TINY[@]}"
[ "$(config_value "$WORK/n2/step_000001/trainer.json" vocab_size)" = 50257 ] && ok || fail "vocab_size from the manifest"
"$MESHLM" eval --checkpoint "$WORK/n2/step_000001" --data "$WORK/nano_shards" --split train --batches 1 --json > "$WORK/ev.json"
grep -q '"split":"train"' "$WORK/ev.json" && grep -q '"train_loss"' "$WORK/ev.json" && ok || fail "eval --json names its split: $(cat "$WORK/ev.json")"

# ---- resume, retention, schedule ----
expect_ok "train with keep_last" "$MESHLM" train --data "$WORK/data" --out "$WORK/r" --steps 6 --save-every 2 --keep-last 2 --eval-every 3 "${TINY[@]}"
[ "$(ls -d "$WORK"/r/step_* | wc -l)" = 2 ] && [ -d "$WORK/r/step_000006" ] && [ -d "$WORK/r/step_000004" ] && ok ||
  fail "keep_last 2 keeps the newest two: $(ls "$WORK/r")"
mkdir "$WORK/r/step_000008.tmp"  # an interrupted save is never picked
expect_ok "resume a run directory" "$MESHLM" train --resume "$WORK/r" --steps 8
grep -q "resumed from .*step_000006 at step 6" "$WORK/out" && ok || fail "--resume RUN_DIR picks the newest complete checkpoint"
grep -q "horizon moved from step 6 to 8" "$WORK/out" && ok || fail "growing steps warns about the schedule"
expect_ok "resume latest" "$MESHLM" train --resume latest --out "$WORK/r" --steps 9 --lr-decay-steps 8
grep -q "at step 8" "$WORK/out" && ! grep -q "horizon moved" "$WORK/out" && ok || fail "--resume latest; lr_decay_steps pins the horizon"
mkdir -p "$WORK/empty_run"
expect_error "a run directory without checkpoints" "without complete checkpoints" "$MESHLM" train --resume "$WORK/empty_run"

# ---- pictures and logs ----
expect_ok "train with tensorboard" "$MESHLM" train --data "$WORK/data" --out "$WORK/p1" --steps 6 --eval-every 3 --tensorboard --log-every 3 "${TINY[@]}"
[ "$(grep -c '^step ' "$WORK/out")" = 3 ] && ok || fail "--log-every 3 prints steps 1 (the first), 3 and 6: $(grep -c '^step ' "$WORK/out")"
ls "$WORK"/p1/tensorboard/events.out.tfevents.* >/dev/null 2>&1 && ok || fail "TensorBoard event file"
expect_ok "train bf16" "$MESHLM" train --data "$WORK/data" --out "$WORK/p2" --steps 6 --eval-every 3 --precision bf16 "${TINY[@]}"
expect_ok "meshlm plot" "$MESHLM" plot "$WORK/p1" "$WORK/p2" --out "$WORK/cmp.png"
for svg in "$WORK/p1/loss.svg" "$WORK/cmp.svg"; do
  /usr/bin/python3 -c "import sys, xml.etree.ElementTree as ET; r = ET.parse(sys.argv[1]).getroot(); assert r.tag.endswith('svg')" "$svg" &&
    ok || fail "$svg parses as XML"
done
[ "$(head -c 8 "$WORK/cmp.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] && [ -s "$WORK/p1/loss.png" ] && ok || fail "PNG written"
grep -q "p1" "$WORK/cmp.svg" && grep -q "p2" "$WORK/cmp.svg" && ok || fail "meshlm plot names both runs"

# ---- Hugging Face both ways ----
grep -q '"architectures"' "$WORK/p1/step_000006/config.json" && ok || fail "a checkpoint carries HF's config.json"
expect_ok "export bf16" "$MESHLM" export --checkpoint "$WORK/p1/step_000006" --out "$WORK/hf16" --dtype bf16
grep -q '"torch_dtype": "bfloat16"' "$WORK/hf16/config.json" && ok || fail "bf16 export sets torch_dtype"
expect_ok "import" "$MESHLM" import --from "$WORK/hf16" --out "$WORK/imported"
expect_ok "sample an import" "$MESHLM" sample --checkpoint "$WORK/imported" --prompt "ROMEO:" --tokens 5
expect_error "resume of weights only" "holds weights only" "$MESHLM" train --resume "$WORK/imported" --data "$WORK/data"
expect_ok "init-from an export" "$MESHLM" train --init-from "$WORK/hf16" --data "$WORK/data" --out "$WORK/ft" --steps 2 --seq-len 32 --batch-size 4 --eval-batches 1 --peak-gflops 100
grep -q "init    .* (BF16) from" "$WORK/out" && grep -q "model   from .*config.json" "$WORK/out" && ok || fail "--init-from reads config.json and BF16 weights"
# a bare model.safetensors whose vocabulary is padded (zero rows past vocab_size, as nanoGPT's
# 50304), then one whose extra rows are not zero: refused unless --vocab-resize
/usr/bin/python3 - "$WORK/p1/step_000006/model.safetensors" "$WORK" <<'PY'
import json, struct, sys
import numpy as np
src, work = sys.argv[1:3]
data = open(src, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n]); header.pop("__metadata__", None)
T = {k: np.frombuffer(data[8 + n + e["data_offsets"][0]: 8 + n + e["data_offsets"][1]], "<f4").reshape(e["shape"])
     for k, e in header.items()}
def write(path, tensors):
    h, off, blobs = {}, 0, []
    for k, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        h[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    hb = json.dumps(h).encode(); hb += b" " * (-(8 + len(hb)) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
wte = T["transformer.wte.weight"]
padded = dict(T); padded["transformer.wte.weight"] = np.concatenate([wte, np.zeros((64, wte.shape[1]), "f4")])
write(work + "/padded.safetensors", padded)
noisy = dict(T); noisy["transformer.wte.weight"] = np.concatenate([wte, np.ones((64, wte.shape[1]), "f4")])
write(work + "/bigger.safetensors", noisy)
PY
BARE=(--data "$WORK/data" --steps 1 "${TINY[@]}" --max-seq-len 32)
expect_ok "init-from padded vocabulary" "$MESHLM" train --init-from "$WORK/padded.safetensors" --out "$WORK/pad1" "${BARE[@]}"
grep -q "are zero padding, dropped" "$WORK/out" && ok || fail "zero padding rows are dropped"
expect_error "init-from a larger vocabulary" "vocab-resize" "$MESHLM" train --init-from "$WORK/bigger.safetensors" --out "$WORK/pad2" "${BARE[@]}"
expect_ok "init-from with --vocab-resize" "$MESHLM" train --init-from "$WORK/bigger.safetensors" --vocab-resize --out "$WORK/pad3" "${BARE[@]}"
grep -q "vocabulary resized from 320 to 256" "$WORK/out" && ok || fail "--vocab-resize cuts the vocabulary"
expect_error "init-from contradicted" "contradicts" "$MESHLM" train --init-from "$WORK/hf16" --n-layer 3 --data "$WORK/data" --out "$WORK/ft2" --steps 1

# ---- the layout comes from the job ----
if [ -n "$MPIRUN" ]; then
  mpi() { timeout 300 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none "$@"; }
  if mpi -np 8 "$MESHLM" train --data "$WORK/data" --out "$WORK/l8" --steps 2 --n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 \
       --batch-size 8 --micro-batch-size 2 --dp 2 --tp 2 --pp 2 --eval-batches 0 --peak-gflops 100 > "$WORK/l8.log" 2>&1; then
    expect_ok "one process resumes dp2 x tp2 x pp2" "$MESHLM" train --resume "$WORK/l8/step_000002" --steps 3
    grep -q "resumed from .* at step 2" "$WORK/out" && ok || fail "resumed at step 2 on one process"
  else
    fail "dp2 x tp2 x pp2 run"; tail -5 "$WORK/l8.log"
  fi
  mpi -np 2 "$MESHLM" train --data "$WORK/data" --out "$WORK/l2" --steps 1 "${TINY[@]}" > "$WORK/l2.log" 2>&1 &&
    grep -q "layout  dp 2 x tp 1 x pp 1" "$WORK/l2.log" && ok || { fail "mpirun -np 2 without --dp is dp 2"; tail -3 "$WORK/l2.log"; }
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
