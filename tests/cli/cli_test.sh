#!/usr/bin/env bash
# End-to-end tests of the meshlm command: every subcommand's --help, prepare -> train (TOML
# config + flag overrides) -> resume -> eval -> sample -> info, and one-line errors with a
# non-zero exit for each kind of bad input. Usage: cli_test.sh path/to/meshlm repo_root
set -uo pipefail
MESHLM="$1"
ROOT="$2"
source "$(dirname "$0")/helpers.sh" cli

for sub in train eval sample prepare bench report info ladder; do
  expect_ok "help $sub" "$MESHLM" "$sub" --help
done
# (help text into a file first: `grep -q` closing the pipe early would SIGPIPE the writer and
# fail the pipeline under pipefail)
"$MESHLM" train --help > "$WORK/train_help.txt"
grep -q -- "--n-layer" "$WORK/train_help.txt" && ok || fail "train --help lists --n-layer"
"$MESHLM" >/dev/null 2>&1 && fail "no subcommand should fail" || ok
"$MESHLM" train --no-such-flag >/dev/null 2>&1 && fail "unknown flag should fail" || ok

# prepare a small corpus
head -c 60000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
expect_ok prepare "$MESHLM" prepare --tokenizer bytes --input "$WORK/small.txt" --output "$WORK/data"
[ -f "$WORK/data/train_000000.bin" ] && [ -f "$WORK/data/val_000000.bin" ] && ok || fail "prepare wrote shards"

# train from a TOML config, with a flag overriding one of its keys
cat > "$WORK/tiny.toml" <<TOML
n_layer = 2
n_head = 2
n_embd = 32
seq_len = 32
batch_size = 4
steps = 999
eval_every = 4
eval_batches = 2
peak_gflops = 100.0
lr_schedule = "constant"
TOML
expect_ok train "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/run" --steps 6 --save-every 3
[ -f "$WORK/run/step_000006/COMPLETE" ] && [ -f "$WORK/run/step_000003/model.safetensors" ] && ok || fail "checkpoints written"
[ "$(grep -c '"loss"' "$WORK/run/metrics.jsonl")" -eq 6 ] && ok || fail "metrics.jsonl has 6 step lines"
grep -q '"val_loss"' "$WORK/run/metrics.jsonl" && ok || fail "metrics.jsonl has eval lines"
grep -q '"steps": 6' "$WORK/run/step_000006/trainer.json" && ok || fail "the flag overrode the config file"

# resume continues to a later step
expect_ok resume "$MESHLM" train --resume "$WORK/run/step_000006" --out "$WORK/run2" --steps 8
[ -f "$WORK/run2/step_000008/COMPLETE" ] && ok || fail "resume reached step 8"

# resume in a separate process is bit-identical to the uninterrupted run (steps 4-6)
expect_ok "resume from step 3" "$MESHLM" train --resume "$WORK/run/step_000003" --out "$WORK/run3"
for f in model.safetensors optimizer.safetensors; do
  cmp -s "$WORK/run/step_000006/$f" "$WORK/run3/step_000006/$f" && ok || fail "resumed $f differs from the uninterrupted run"
done
diff <(grep '"loss"' "$WORK/run/metrics.jsonl" | tail -3 | sed 's/"ms_per_step".*//') \
     <(grep '"loss"' "$WORK/run3/metrics.jsonl" | sed 's/"ms_per_step".*//') >/dev/null && ok || fail "resumed losses differ"

# a fresh run refuses a directory holding a run; --overwrite starts afresh there
expect_error "run dir in use" "already holds a run" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/run" --steps 2
expect_ok overwrite "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/run3" --steps 2 --overwrite
[ -d "$WORK/run3/step_000002" ] && [ ! -d "$WORK/run3/step_000006" ] && ok || fail "--overwrite removed the old checkpoints"

# Ctrl-C: the run stops after the current step, saves a checkpoint, exits non-zero
"$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/int" --steps 1000000 --eval-batches 0 >"$WORK/int.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '"loss"' "$WORK/int/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid" && fail "interrupted run exited 0" || ok
grep -q "interrupted (SIGINT) at step" "$WORK/int.log" && ls "$WORK"/int/step_*/COMPLETE >/dev/null 2>&1 && ok || { fail "Ctrl-C saved a checkpoint"; cat "$WORK/int.log"; }

# eval --json prints {"split": "val", "loss": x, "val_loss": x, "loss_per_byte": y, "val_loss_per_byte": y, ...}
expect_ok eval "$MESHLM" eval --checkpoint "$WORK/run/step_000006" --data "$WORK/data" --batches 2 --json
grep -qE '^\{"split":"val","loss":[0-9.]+,"val_loss":[0-9.]+,"loss_per_byte":[0-9.]+,"val_loss_per_byte":[0-9.]+,"batches":2,"tokens":[0-9]+\}$' "$WORK/out" && ok || { fail "eval --json output"; cat "$WORK/out"; }

# sample is deterministic for a seed
expect_ok sample "$MESHLM" sample --checkpoint "$WORK/run/step_000006" --prompt "ROMEO:" --tokens 20 --seed 3 --top-k 5
cp "$WORK/out" "$WORK/sample1"
"$MESHLM" sample --checkpoint "$WORK/run/step_000006" --prompt "ROMEO:" --tokens 20 --seed 3 --top-k 5 > "$WORK/sample2"
cmp -s "$WORK/sample1" "$WORK/sample2" && ok || fail "sample is reproducible for a seed"
# eval and sample choose the backend as train does: on the guarded one (no host access to
# tensor memory) they give the cpu backend's output exactly
"$MESHLM" eval --checkpoint "$WORK/run/step_000006" --data "$WORK/data" --batches 2 --json > "$WORK/eval_cpu"
"$MESHLM" eval --checkpoint "$WORK/run/step_000006" --data "$WORK/data" --batches 2 --json --backend cpu-guarded > "$WORK/eval_guarded"
cmp -s "$WORK/eval_cpu" "$WORK/eval_guarded" && ok || fail "eval --backend cpu-guarded equals cpu"
"$MESHLM" sample --checkpoint "$WORK/run/step_000006" --prompt "ROMEO:" --tokens 20 --seed 3 --top-k 5 --backend cpu-guarded > "$WORK/sample3"
cmp -s "$WORK/sample1" "$WORK/sample3" && ok || fail "sample --backend cpu-guarded equals cpu"
expect_error "unknown backend" "unknown backend 'gpu'" "$MESHLM" eval --checkpoint "$WORK/run/step_000006" --data "$WORK/data" --backend gpu
expect_ok info "$MESHLM" info --checkpoint "$WORK/run/step_000006"
# export: a Hugging Face directory (the NumPy references check its contents); no silent overwrite;
# the tokenizer as HF's tokenizer.json (a BPE model section), never meshlm's file under that name
expect_ok export "$MESHLM" export --checkpoint "$WORK/run/step_000006" --out "$WORK/hf"
[ -f "$WORK/hf/config.json" ] && [ -f "$WORK/hf/generation_config.json" ] && [ -f "$WORK/hf/model.safetensors" ] &&
  grep -q '"model":{"type":"BPE"' "$WORK/hf/tokenizer.json" && [ -f "$WORK/hf/tokenizer_config.json" ] && ok ||
  fail "export writes config.json, generation_config.json, model.safetensors, HF's tokenizer.json"
expect_error "export over an export" "already holds a config.json" "$MESHLM" export --checkpoint "$WORK/run/step_000006" --out "$WORK/hf"
expect_ok "export --overwrite" "$MESHLM" export --checkpoint "$WORK/run/step_000006" --out "$WORK/hf" --overwrite

# tokenizers: GPT-2 from the command line, a trained BPE end to end (prepare, train, sample)
echo -n "Hello, world!" | "$MESHLM" tokenizer encode --tokenizer gpt2 > "$WORK/ids"
[ "$(cat "$WORK/ids")" = "[15496,11,995,0]" ] && ok || fail "tokenizer encode gpt2: $(cat "$WORK/ids")"
[ "$("$MESHLM" tokenizer decode --tokenizer gpt2 < "$WORK/ids")" = "Hello, world!" ] && ok || fail "tokenizer decode gpt2"
expect_ok "tokenizer train" "$MESHLM" tokenizer train --vocab-size 300 --input "$WORK/small.txt" --output "$WORK/tok.json"
printf 'To be, or not to be' | "$MESHLM" tokenizer encode --tokenizer "$WORK/tok.json" > "$WORK/ids2"
[ "$("$MESHLM" tokenizer decode --tokenizer "$WORK/tok.json" < "$WORK/ids2")" = "To be, or not to be" ] && ok || fail "trained tokenizer round trip"
expect_ok "prepare bpe" "$MESHLM" prepare --tokenizer "$WORK/tok.json" --input "$WORK/small.txt" --output "$WORK/bpe"
grep -q '"eot_token": 299' "$WORK/bpe/manifest.json" && ok || fail "manifest names the <|endoftext|> id"
expect_ok "train bpe" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/bpe" --vocab-size 300 --out "$WORK/bperun" --steps 2
[ -f "$WORK/bperun/step_000002/meshlm_tokenizer.json" ] && [ ! -e "$WORK/bperun/step_000002/tokenizer.json" ] && ok ||
  fail "the checkpoint carries its tokenizer under meshlm's own file name"
rm "$WORK/tok.json"  # sampling must not need the original file
expect_ok "sample bpe" "$MESHLM" sample --checkpoint "$WORK/bperun/step_000002" --prompt "To be" --tokens 5
grep -q '"val_loss_per_byte"' "$WORK/bperun/metrics.jsonl" && ok || fail "eval reports nats per byte"
echo '[1, 2' | "$MESHLM" tokenizer decode --tokenizer gpt2 >/dev/null 2>&1 && fail "decode of bad JSON succeeded" || ok
expect_error "bad tokenizer file" "not valid JSON at byte" "$MESHLM" tokenizer encode --tokenizer "$WORK/tiny.toml"

# ---- bad input: one line naming the file/key, non-zero exit ----
expect_error "missing data dir" "nowhere" "$MESHLM" train --data "$WORK/nowhere" --out "$WORK/bad1" --steps 1
printf 'garbage' > "$WORK/garbage_train.bin"; mkdir -p "$WORK/bad_shards"; mv "$WORK/garbage_train.bin" "$WORK/bad_shards/"
expect_error "truncated shard" "garbage_train.bin" "$MESHLM" train --data "$WORK/bad_shards" --out "$WORK/bad2" --steps 1
head -c 2048 /dev/zero > "$WORK/bad_shards/garbage_train.bin"
expect_error "wrong magic" "magic" "$MESHLM" train --data "$WORK/bad_shards" --out "$WORK/bad3" --steps 1
expect_error "token id >= vocab" "vocab_size" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad4" --vocab-size 50 --steps 1
expect_error "non-positive size" "n_layer must be positive" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad5" --n-layer 0
expect_error "bad number" "batch_size" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad6" --batch-size lots
echo 'n_layers = 3' > "$WORK/typo.toml"
expect_error "unknown config key" "unknown config key 'n_layers'" "$MESHLM" train --config "$WORK/typo.toml" --data "$WORK/data"
echo 'n_layer = "three"' > "$WORK/type.toml"
expect_error "wrong type in config" "n_layer" "$MESHLM" train --config "$WORK/type.toml" --data "$WORK/data"
echo 'n_layer = = 3' > "$WORK/syntax.toml"
expect_error "config syntax" "syntax.toml" "$MESHLM" train --config "$WORK/syntax.toml" --data "$WORK/data"
expect_error "shape mismatch on resume" "differs from the checkpoint" "$MESHLM" train --resume "$WORK/run/step_000006" --n-embd 64 --out "$WORK/bad7"
expect_error "missing checkpoint" "no such checkpoint" "$MESHLM" eval --checkpoint "$WORK/nope" --data "$WORK/data"
cp -r "$WORK/run/step_000006" "$WORK/tampered"
printf '\x01' | dd of="$WORK/tampered/model.safetensors" bs=1 seek=2000 conv=notrunc status=none
expect_error "tampered checkpoint" "checksum mismatch" "$MESHLM" sample --checkpoint "$WORK/tampered"
cp -r "$WORK/run/step_000006" "$WORK/truncated"
truncate -s 1000 "$WORK/truncated/model.safetensors"
expect_error "truncated checkpoint" "truncated" "$MESHLM" eval --checkpoint "$WORK/truncated" --data "$WORK/data"
# ---- precision: modes, cross-mode resume, the numerics report ----
expect_ok "train bf16" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bf16" --steps 4 --precision bf16 --numerics-report 2
grep -q "numerics bf16: compute bf16" "$WORK/out" && ok || fail "train bf16 names its precision"
expect_ok "resume bf16 as fp16" "$MESHLM" train --resume "$WORK/bf16/step_000004" --out "$WORK/fp16" --steps 6 --precision fp16
grep -q "trained in bf16, continuing in fp16" "$WORK/out" && ok || fail "cross-mode resume is announced"
grep -q '"loss_scale":65536' "$WORK/fp16/metrics.jsonl" && ok || fail "fp16 lines carry the loss scale"
expect_ok report "$MESHLM" report "$WORK/bf16"
grep -q "numerics at step 4 (format bf16" "$WORK/out" && ok || fail "report names the step and format"
[ -s "$WORK/bf16/numerics.svg" ] && ok || fail "report writes the SVG"
grep -q -- "--precision" "$WORK/train_help.txt" && ok || fail "train --help lists --precision"
expect_error "unknown precision" "precision must be fp32, bf16, fp16, fp16-pure, fp8 or a GEMM format" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad8" --precision fp4
expect_error "unknown format option" "unknown option '+fast'" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad8b" --precision mxfp4+fast
expect_error "bad plan selector" "unknown selector 'blocks.0'" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad8c" --precision bf16 --precision-plan "blocks.0: mxfp4"
expect_error "plan needs bf16" "precision_plan needs --precision bf16" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad8d" --precision fp32 --precision-plan "*: mxfp4"
expect_error "bad instability action" "on_instability must be warn, skip, rescale, promote or stop" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad8e" --on-instability panic
expect_ok "train with a precision plan" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/plan" --steps 3 --precision bf16 --precision-plan "layers.0: mxfp8; *: nvfp4+recipe"
grep -q "formats .*mxfp8 on .*nvfp4+recipe on" "$WORK/out" && ok || fail "train names its GEMM formats"
grep -q "quantization simulated" "$WORK/out" && ok || fail "a GEMM format's speed is labelled simulated"
# the ladder, two entries, then continued: the finished entries are not run again
printf 'f32 | fp32\nfour | mxfp4 | | promote\n' > "$WORK/entries.txt"
expect_ok "ladder" "$MESHLM" ladder --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/ladder" --steps 3 --eval-batches 2 --entries "$WORK/entries.txt"
grep -q "| four | mxfp4 |" "$WORK/ladder/ladder.md" && [ -f "$WORK/ladder/ladder.svg" ] && [ -f "$WORK/ladder/curves.png" ] && ok || fail "ladder writes its table and plots"
expect_ok "ladder again" "$MESHLM" ladder --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/ladder" --steps 3 --eval-batches 2 --entries "$WORK/entries.txt"
grep -q "four: done before" "$WORK/out" && ok || fail "a finished ladder entry is not run again"
expect_error "ladder bad entries" "ladder entries: none" "$MESHLM" ladder --data "$WORK/data" --out "$WORK/ladder2" --entries /dev/null
expect_error "master weights need bf16" "master_weights = 0 is a bf16 mode" "$MESHLM" train --data "$WORK/data" --out "$WORK/bad9" --precision fp16 --master-weights 0
expect_error "fp16-pure diverges" "pure-fp16 recipe diverged" "$MESHLM" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad10" --steps 4 --precision fp16-pure
expect_error "report without numerics" "numerics-report" "$MESHLM" report "$WORK/run"

# ---- bench: a smoke test (few steps, tiny model); no timing is asserted ----
expect_ok "bench json" "$MESHLM" bench --n-layer 1 --n-head 2 --n-embd 32 --seq-len 16 --batch-size 2 --warmup 1 --timed-steps 2 --json --breakdown
/usr/bin/python3 -c '
import json, sys
j = json.loads(open(sys.argv[1]).read())
for k in ("tokens_per_s", "ms_per_step", "ms_min", "ms_max", "mfu", "peak_rss_mib", "model_gflops", "peak_gflops"):
    assert j[k] > 0, k
assert j["ms_min"] <= j["ms_per_step"] <= j["ms_max"] and j["peak_source"], j
assert j["steps"] == 2 and "matmul.forward" in j["breakdown_ms_per_step"], j
' "$WORK/out" && ok || { fail "bench --json prints the contract keys"; cat "$WORK/out"; }
# the MFU peak: measured once, then read from --peak-cache
expect_ok "bench peak measured" "$MESHLM" bench --n-layer 1 --n-head 2 --n-embd 32 --seq-len 16 --batch-size 2 --warmup 1 --timed-steps 2 --peak-cache "$WORK/peaks.json"
grep -q "(measured, fp32 2048^3 GEMM)" "$WORK/out" && ok || fail "bench measures the peak without a cache entry"
expect_ok "bench peak cached" "$MESHLM" bench --n-layer 1 --n-head 2 --n-embd 32 --seq-len 16 --batch-size 2 --warmup 1 --timed-steps 2 --peak-cache "$WORK/peaks.json"
grep -q "cached in $WORK/peaks.json" "$WORK/out" && grep -q '"gflops"' "$WORK/peaks.json" && ok || fail "bench reads the cached peak"
echo "not json" > "$WORK/peaks.json"
expect_ok "bench damaged peak cache" "$MESHLM" bench --n-layer 1 --n-head 2 --n-embd 32 --seq-len 16 --batch-size 2 --warmup 1 --timed-steps 2 --peak-cache "$WORK/peaks.json"
grep -q "(measured," "$WORK/out" && ok || fail "a damaged peak cache is measured over"
expect_ok "bench text" "$MESHLM" bench --n-layer 1 --n-head 2 --n-embd 32 --seq-len 16 --batch-size 2 --warmup 1 --timed-steps 2 --precision fp8
grep -q "fp8 simulated" "$WORK/out" && ok || fail "bench says fp8 is simulated"
ls /tmp/meshlm_bench_* >/dev/null 2>&1 && fail "bench left temporary directories" || ok
expect_error "bench bad steps" "timed-steps\|--steps must be" "$MESHLM" bench --timed-steps 0

# failed runs leave no checkpoint behind
ls -d "$WORK"/bad*/step_* >/dev/null 2>&1 && fail "a failed run left a checkpoint" || ok

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
