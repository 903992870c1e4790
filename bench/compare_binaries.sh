#!/usr/bin/env bash
# Bit-identity of two meshlm binaries (a refactoring must change no number): the same tiny
# training runs with both, for every precision on one rank and for each mpirun layout of the
# tests, then a byte comparison of what they wrote: metrics.jsonl without its timing fields
# (losses, grad norms, loss scales, eval losses, skipped steps), numerics.jsonl, and the final
# checkpoint's model and optimizer safetensors. A resume leg checks checkpoints too.
# Usage: bench/compare_binaries.sh OLD_MESHLM NEW_MESHLM [FILTER]   (FILTER: a grep -E on run names)
# Prints one line per run and "N identical, M differ"; exits non-zero on any difference.
set -uo pipefail
OLD="$1"
NEW="$2"
FILTER="${3:-.}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MPIRUN="${MPIRUN:-mpirun}"
export OMP_NUM_THREADS=1
WORK="$(mktemp -d /tmp/meshlm_bitwise.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
head -c 200000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
"$NEW" prepare --tokenizer bytes --input "$WORK/small.txt" --output "$WORK/data" >/dev/null || exit 1
printf 'n_layer = 4\nn_head = 4\nn_embd = 32\nseq_len = 32\nbatch_size = 8\nmicro_batch_size = 2\nlr = 3e-3\nwarmup_steps = 5\nsteps = 20\neval_every = 10\neval_batches = 1\npeak_gflops = 100\nbucket_mb = 0.01\n' \
  > "$WORK/tiny.toml"

same=0
differ=0
# both NAME NP ARGS...: `train ARGS` with each binary (NP ranks under mpirun; 0: none), the
# run directory's name and {dir} in ARGS replaced per binary, then the comparison
both() {
  local name=$1 np=$2
  shift 2
  echo "$name" | grep -qE "$FILTER" || return 0
  for which in old new; do
    local bin=$OLD
    [ $which = new ] && bin=$NEW
    local launch=()
    [ "$np" -gt 0 ] && launch=(timeout 300 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np "$np")
    "${launch[@]}" "$bin" train "${@//\{dir\}/$WORK/$which}" --out "$WORK/$which/$name" \
      >"$WORK/$which/$name.log" 2>&1 || echo "  ($which run of $name failed: $(tail -1 "$WORK/$which/$name.log"))"
  done
  compare_dirs "$name"
}
# one NAME NP flags...: train NAME from scratch with both binaries and compare
one() {
  local name=$1 np=$2
  shift 2
  both "$name" "$np" --config "$WORK/tiny.toml" --data "$WORK/data" "$@"
}
# compare_dirs NAME: the two runs' outputs, byte for byte where it matters
compare_dirs() {
  local name=$1 bad=""
  for which in old new; do
    /usr/bin/python3 - "$WORK/$which/$name/metrics.jsonl" >"$WORK/$which/$name.numbers" <<'PY'
import json, sys
timing = {"ms_per_step", "tokens_per_s", "mfu", "rss_mib", "comm_wait_ms", "pp_idle"}
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(json.dumps({k: v for k, v in d.items() if k not in timing}))
PY
  done
  cmp -s "$WORK/old/$name.numbers" "$WORK/new/$name.numbers" || bad="$bad metrics"
  [ -s "$WORK/new/$name.numbers" ] || bad="$bad no-metrics"
  if [ -e "$WORK/old/$name/numerics.jsonl" ]; then
    cmp -s "$WORK/old/$name/numerics.jsonl" "$WORK/new/$name/numerics.jsonl" || bad="$bad numerics"
  fi
  local last
  last=$(ls -d "$WORK/old/$name"/step_* 2>/dev/null | tail -1)
  if [ -n "$last" ]; then
    for f in "$last"/*.safetensors; do
      cmp -s "$f" "$WORK/new/$name/$(basename "$last")/$(basename "$f")" || bad="$bad $(basename "$f")"
    done
  fi
  if [ -z "$bad" ]; then
    same=$((same + 1))
    echo "identical  $name"
  else
    differ=$((differ + 1))
    echo "DIFFERENT  $name:$bad"
    diff <(head -c 3000 "$WORK/old/$name.numbers") <(head -c 3000 "$WORK/new/$name.numbers") | head -6
  fi
}
# resumed NAME FROM STEP NP flags...: resume run FROM's checkpoint STEP with both binaries
resumed() {
  local name=$1 from=$2 step=$3 np=$4
  shift 4
  [ -d "$WORK/old/$from" ] || return 0  # its run was filtered out
  both "$name" "$np" --resume "{dir}/$from/$(printf step_%06d "$step")" "$@"
}
mkdir -p "$WORK/old" "$WORK/new"

# one rank, every precision (and the precision options)
one fp32 0
one bf16 0 --precision bf16 --numerics-report 5
one fp16 0 --precision fp16 --inject-inf-at-step 3 --numerics-report 5
one fp16_static 0 --precision fp16 --loss-scale 1024
one fp16_pure 0 --precision fp16-pure --eps 1e-4
one fp16_pure_diverges 0 --precision fp16-pure
one fp8 0 --precision fp8 --numerics-report 5
one bf16_sr 0 --precision bf16 --stochastic-rounding 1
one bf16_nomaster 0 --precision bf16 --master-weights 0
one fp32_recompute_full 0 --recompute full
one bf16_recompute_sel 0 --precision bf16 --recompute selective
one fp32_save 0 --save-every 10
resumed fp32_resume fp32_save 10 0
one bf16_save 0 --precision bf16 --save-every 10
resumed bf16_resume_fp16 bf16_save 10 0 --precision fp16
# data parallel
one dp2 2 --dp 2
one dp4_accum 4 --dp 4 --micro-batch-size 1
one dp2_zero 2 --dp 2 --zero 1
one dp4_zero_accum 4 --dp 4 --zero 1 --micro-batch-size 1 --save-every 10
resumed dp4_zero_to_dp2 dp4_zero_accum 10 2 --dp 2 --zero 0
one dp2_noverlap 2 --dp 2 --overlap 0
one bf16_dp2_gr 2 --dp 2 --precision bf16 --grad-reduce bf16
one bf16_dp2_zero 2 --dp 2 --precision bf16 --zero 1 --save-every 10
one fp16_dp2 2 --dp 2 --precision fp16 --inject-inf-at-step 3
one fp8_dp2 2 --dp 2 --precision fp8
# tensor (and sequence) parallel
one tp2 2 --dp 1 --tp 2
one tp4 4 --dp 1 --tp 4
one tp2_sp 2 --dp 1 --tp 2 --sequence-parallel 1
one dp2tp2_zero 4 --dp 2 --tp 2 --zero 1 --save-every 10
resumed dp2tp2_to_tp4 dp2tp2_zero 10 4 --dp 1 --tp 4 --zero 0
one bf16_tp2_sp 2 --dp 1 --tp 2 --precision bf16 --sequence-parallel 1 --numerics-report 5
one fp8_tp2 2 --dp 1 --tp 2 --precision fp8
# pipeline parallel
one pp2 2 --dp 1 --pp 2
one pp2_gpipe_sel 2 --dp 1 --pp 2 --pp-schedule gpipe --recompute selective
one pp4_full 4 --dp 1 --pp 4 --recompute full
one dp2pp2 4 --dp 2 --pp 2
one tp2pp2 4 --dp 1 --tp 2 --pp 2
one dp2tp2pp2 8 --dp 2 --tp 2 --pp 2 --save-every 10
resumed dp2tp2pp2_to_one dp2tp2pp2 10 0 --dp 1 --tp 1 --pp 1
one dp2tp2pp2_sp_zero 8 --dp 2 --tp 2 --pp 2 --sequence-parallel 1 --zero 1 --recompute selective
one bf16_dp2tp2pp2 8 --dp 2 --tp 2 --pp 2 --precision bf16 --numerics-report 5
one fp16_pp2 2 --dp 1 --pp 2 --precision fp16
one uneven 2 --dp 1 --pp 2 --pp-layers 1,3

echo "$same identical, $differ differ"
[ "$differ" -eq 0 ]
