#!/usr/bin/env bash
# Distributed checkpoints (checkpoint_format = parts, train/checkpoint_parts.h) under mpirun:
# every rank writes its own slices, nothing gathered; the result must hold exactly the state
# the gathered whole-tensor checkpoint holds - `meshlm export` consolidates both to the same
# bytes - and resume anywhere as the whole one does, at dp2 x tp2 x pp2 (GPT-2), ZeRO-1 dp 4 in
# bf16 (the masters outside a rank's shard stale until gathered: parts need no gather), and
# Llama with kv heads shared over tp. A missing part is refused by name.
# Usage: parts_test.sh path/to/meshlm path/to/mpirun repo_root
source "$(dirname "$0")/mpi_helpers.sh"
setup parts 4 "save_every = 2"
STEPS=3
export_same() {  # LABEL WHOLE_RUN PARTS_RUN: the consolidated export is byte-identical
  local label=$1
  for r in "$2" "$3"; do
    "$MESHLM" export --checkpoint "$WORK/$r/step_000002" --out "$WORK/$r.hf" --overwrite >/dev/null 2>&1 || {
      fail "$label: export of $r"; return; }
  done
  cmp -s "$WORK/$2.hf/model.safetensors" "$WORK/$3.hf/model.safetensors" && ok ||
    fail "$label: the parts checkpoint consolidates to other bytes than the gathered one"
}
both() {  # NP LABEL flags...: a whole and a parts run of 2 steps
  local np=$1 label=$2
  shift 2
  run "$np" "$label.whole" --steps 2 "$@" || { fail "$label whole run: $(tail -1 "$WORK/$label.whole.log")"; return 1; }
  run "$np" "$label.parts" --steps 2 --checkpoint-format parts "$@" || {
    fail "$label parts run: $(tail -1 "$WORK/$label.parts.log")"; return 1; }
  [ -f "$WORK/$label.parts/step_000002/part.0-of-$np.safetensors" ] && [ ! -e "$WORK/$label.parts/step_000002/model.safetensors" ] &&
    ok || fail "$label: one part per rank, no gathered model.safetensors"
  export_same "$label" "$label.whole" "$label.parts"
}
# resumed_same LABEL NP RUN flags...: resume RUN.whole's and RUN.parts's checkpoints on NP ranks to
# step 3; the continued losses are identical
resumed_same() {
  local label=$1 np=$2 r=$3
  shift 3
  for k in whole parts; do
    mpi "$np" train --resume "$WORK/$r.$k/step_000002" --out "$WORK/$r.$k.re$np" --steps 3 "$@" >"$WORK/$r.$k.re$np.log" 2>&1 ||
      { fail "$label: resume of $r.$k: $(tail -1 "$WORK/$r.$k.re$np.log")"; return; }
  done
  check "$label" "$r.whole.re$np" "$r.parts.re$np" 0 2
}

LAYERS=4 both 8 gpt2 --dp 2 --tp 2 --pp 2 --micro-batch-size 2 && resumed_same "dp2 x tp2 x pp2 parts resumed on 1 rank = whole" 1 gpt2
both 4 zero1 --zero 1 --precision bf16 && resumed_same "ZeRO-1 dp 4 bf16 parts resumed at dp 2 = whole" 2 zero1 --dp 2
both 4 llama --arch llama --n-kv-head 1 --dp 2 --tp 2 --vocab-size 256

# a missing part is refused by name
cp -r "$WORK/gpt2.parts/step_000002" "$WORK/missing"
rm -f "$WORK/missing/part.3-of-8.safetensors"
if "$MESHLM" info --checkpoint "$WORK/missing" >"$WORK/missing.log" 2>&1; then
  fail "a checkpoint missing a part verified"
else
  grep -q "part.3-of-8.safetensors: missing" "$WORK/missing.log" && ok || { fail "missing part message"; cat "$WORK/missing.log"; }
fi
grep -q "layout  dp 2 x tp 2 x pp 2" "$WORK/gpt2.parts.log" && [ -f "$WORK/gpt2.parts/step_000002/part.7-of-8.safetensors" ] && ok || fail "the 8-rank run: its layout and 8 parts"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
