#!/usr/bin/env bash
# meshlm against the real consumers of its files (not in `make test`: it pip-installs large
# packages). One cached virtual environment, build/interop-venv (the PyTorch comparison in
# bench/ may reuse it), holds transformers, torch, tensorboard, tiktoken and safetensors.
# Checks:
#   1. from_pretrained on exported GPT-2 and Llama directories gives meshlm's logits (fp32,
#      <= 1e-5 relative to the largest logit) and loss, the bf16 export loads in bfloat16, and
#      AutoTokenizer loads the exported tokenizer.json and encodes as meshlm does;
#   2. TensorBoard's own event reader reads every scalar of a run's metrics.jsonl;
#   3. tiktoken, with its "gpt2" encoding built from the shipped encoder.json and vocab.bpe
#      (it cannot download its own here), encodes all of tiny-shakespeare as meshlm does.
# Usage: scripts/interop_check.sh [build_dir]     (after `make`, or builds first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
MESHLM="$BUILD/meshlm"
[ -x "$MESHLM" ] || { cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build "$BUILD" -j"$(nproc)"; }
VENV="$BUILD/interop-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import transformers, torch, tensorboard, tiktoken, safetensors" 2>/dev/null; then
  echo "interop: installing transformers, torch, tensorboard, tiktoken into $VENV (once; several GB)"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q numpy torch transformers tensorboard tiktoken safetensors
fi
PY="$VENV/bin/python"
WORK="$(mktemp -d /tmp/meshlm_interop.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

head -c 100000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
"$MESHLM" prepare --tokenizer gpt2 --input "$WORK/small.txt" --output "$WORK/gpt2data" > /dev/null
"$MESHLM" prepare --tokenizer bytes --input "$WORK/small.txt" --output "$WORK/bytedata" > /dev/null
COMMON=(--seq-len 64 --batch-size 4 --steps 20 --lr 3e-3 --warmup-steps 2 --eval-every 10 --eval-batches 1 --peak-gflops 100 --tensorboard)
"$MESHLM" train --data "$WORK/gpt2data" --out "$WORK/gpt2" --n-layer 2 --n-head 4 --n-embd 64 "${COMMON[@]}" > /dev/null
"$MESHLM" train --data "$WORK/bytedata" --out "$WORK/llama" --arch llama --n-layer 2 --n-head 4 --n-kv-head 2 --n-embd 64 \
  --rope-theta 10000 "${COMMON[@]}" > /dev/null
for m in gpt2 llama; do
  data="$WORK/bytedata"; [ "$m" = gpt2 ] && data="$WORK/gpt2data"
  "$MESHLM" export --checkpoint "$WORK/$m/step_000020" --out "$WORK/hf_$m" > /dev/null
  "$MESHLM" export --checkpoint "$WORK/$m/step_000020" --out "$WORK/hf16_$m" --dtype bf16 > /dev/null
  "$MESHLM" eval --checkpoint "$WORK/$m/step_000020" --data "$data" --batches 1 --batch-size 2 --json \
    --logits "$WORK/$m.logits.npy" > "$WORK/$m.eval.json"
done

MESHLM="$MESHLM" "$PY" - "$ROOT" "$WORK" <<'PY'
import json, os, subprocess, sys
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

root, work = sys.argv[1:3]
failed = 0
def report(ok, what):
    global failed
    print(("ok      " if ok else "FAILED  ") + what)
    failed += 0 if ok else 1

def shard(path):
    with open(path, "rb") as f:
        h = np.frombuffer(f.read(1024), dtype="<i4")
        return np.frombuffer(f.read(), dtype="<u2" if h[1] == 1 else "<u4")[: h[2]].astype(np.int64)

print(f"transformers {transformers.__version__}, torch {torch.__version__}")
for m, data in (("gpt2", "gpt2data"), ("llama", "bytedata")):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(work, "hf_" + m), dtype=torch.float32).eval()
    want = np.load(os.path.join(work, m + ".logits.npy"))
    B, T, V = want.shape
    toks = shard(os.path.join(work, data, "val_000000.bin"))[: B * T + 1]
    ids = torch.tensor(toks[:-1].reshape(B, T))
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    got = out.logits.numpy()
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    report(rel <= 1e-5, f"{m}: {type(model).__name__}.from_pretrained logits vs meshlm eval --logits: "
                        f"max |diff| / max |logit| = {rel:.2e} (bound 1e-5)")
    # The loss on shifted targets, against meshlm's mean over the same first batch.
    tgt = torch.tensor(toks[1:].reshape(B, T))
    ours = float(torch.nn.functional.cross_entropy(torch.tensor(got).reshape(-1, V), tgt.reshape(-1)))
    meshlm_loss = json.load(open(os.path.join(work, m + ".eval.json")))["loss"]
    report(abs(ours - meshlm_loss) / meshlm_loss <= 1e-5, f"{m}: HF loss {ours:.7f} vs meshlm eval {meshlm_loss:.7f}")
    # The checkpoint itself carries config.json beside its HF-named weights: from_pretrained reads it.
    mc = AutoModelForCausalLM.from_pretrained(os.path.join(work, m, "step_000020"), dtype=torch.float32).eval()
    with torch.no_grad():
        lc = mc(input_ids=ids).logits.numpy()
    report(float(np.abs(lc - want).max() / np.abs(want).max()) <= 1e-5,
           f"{m}: from_pretrained on the checkpoint directory itself gives the same logits")
    # The bf16 export: bfloat16 parameters as its torch_dtype says, logits within bf16's rounding.
    m16 = AutoModelForCausalLM.from_pretrained(os.path.join(work, "hf16_" + m)).eval()
    with torch.no_grad():
        l16 = m16(input_ids=ids).logits.float().numpy()
    dt16 = next(m16.parameters()).dtype
    rel16 = float(np.abs(l16 - want).max() / np.abs(want).max())
    report(dt16 == torch.bfloat16 and rel16 <= 0.05, f"{m}: the bf16 export loads as {dt16}; its logits within "
                                                       f"{rel16:.2e} of meshlm's fp32 ones (bf16 rounding; bound 5e-2)")
    tok = AutoTokenizer.from_pretrained(os.path.join(work, "hf_" + m))
    text = open(os.path.join(work, "small.txt")).read()[:20000]
    mine = json.loads(subprocess.run([os.environ["MESHLM"], "tokenizer", "encode", "--tokenizer",
                                      os.path.join(work, "hf_" + m, "tokenizer.json")], input=text.encode(),
                                     capture_output=True, check=True).stdout)
    report(tok(text)["input_ids"] == mine, f"{m}: AutoTokenizer on the exported tokenizer.json and meshlm encode "
                                           f"{len(mine)} tokens identically")

# 2. TensorBoard's event reader: every scalar of metrics.jsonl, at its step.
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for m in ("gpt2", "llama"):
    acc = EventAccumulator(os.path.join(work, m, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {}
    for line in open(os.path.join(work, m, "metrics.jsonl")):
        j = json.loads(line)
        for k, v in j.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                want[(k, j["step"])] = v
    got = {(t, e.step): e.value for t in tags for e in acc.Scalars(t)}
    missing = [k for k in want if k not in got]
    bad = [k for k in want if k in got and abs(got[k] - np.float32(want[k])) > 1e-6 * max(1.0, abs(want[k]))]
    report(not missing and not bad, f"{m}: TensorBoard reads {len(got)} scalars ({len(tags)} tags) = metrics.jsonl's "
                                    f"{len(want)}; missing {len(missing)}, different {len(bad)}")

# 3. tiktoken's gpt2 encoding from the shipped files, against meshlm on all of tiny-shakespeare.
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(root, "data/gpt2/vocab.bpe"), os.path.join(root, "data/gpt2/encoder.json"))
enc = tiktoken.Encoding("gpt2", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
text = open(os.path.join(root, "data/tinyshakespeare.txt")).read()
with open(os.path.join(work, "all.txt"), "w") as f:
    f.write(text)
mine = json.loads(subprocess.run([os.environ["MESHLM"], "tokenizer", "encode", "--tokenizer", "gpt2"], input=text.encode(),
                                 capture_output=True, check=True).stdout)
theirs = enc.encode_ordinary(text)
report(mine == theirs, f"tiktoken gpt2 (built from the shipped files) and meshlm: {len(theirs)} tokens of tiny-shakespeare, "
                       f"{'identical' if mine == theirs else 'DIFFERENT'}")
print(f"{failed} failed")
sys.exit(1 if failed else 0)
PY
