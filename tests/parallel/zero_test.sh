#!/usr/bin/env bash
# ZeRO-2 and ZeRO-3 end to end under mpirun (oversubscribed on the 2-core machine, tiny model,
# 30 steps):
#   - fp32 loss curves of dp 2 and dp 4 at ZeRO-2 and ZeRO-3, with gradient accumulation (both
#     choices: reduce-scatter every micro-batch, whole gradients held), with tp 2 (and sequence
#     parallelism), with gather units of 2 layers and without prefetch, equal dp 1's to <= 1e-5
#     relative; bf16 (also with bf16 reduction and without fp32 masters), fp16 (loss scaling)
#     and fp8 within 2e-3 of their one-rank runs (docs/parallel.md); a pipeline with ZeRO-2;
#   - resharding: a ZeRO-3 dp 4 checkpoint (parts and whole formats) resumes at dp 2 ZeRO-1, at
#     1 rank and at dp 2 x tp 2, a one-rank checkpoint at dp 4 ZeRO-3, each continuing the
#     same curve to <= 1e-6; a checkpoint missing a rank's part is refused by name;
#   - the memory line states the stage's formula; ZeRO-3 with a pipeline is one error line.
# Usage: zero_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
STEPS=30 setup zero 2

run 1 dp1 && ok || fail "dp 1: $(tail -1 "$WORK/dp1.log")"
for cfg in "2 z2 --zero 2" "2 z3 --zero 3" "4 z2_dp4 --zero 2" "4 z3_dp4 --zero 3" "4 z2_dp4_accum --zero 2 --micro-batch-size 1" \
           "4 z3_dp4_accum --zero 3 --micro-batch-size 1" \
           "4 z3_dp4_whole --zero 3 --micro-batch-size 1 --zero-accumulate whole" \
           "4 z3_tp2 --dp 2 --tp 2 --zero 3" "4 z2_tp2_sp --dp 2 --tp 2 --zero 2 --sequence-parallel" \
           "2 z3_unit2_noprefetch --zero 3 --fsdp-unit 2 --overlap 0"; do
  set -- $cfg
  np=$1 name=$2
  shift 2
  if run "$np" "$name" "$@"; then check "$name vs dp1" dp1 "$name" 1e-5; else fail "$name: $(tail -1 "$WORK/$name.log")"; fi
done

# 16-bit and fp8: each against its own one-rank run
for prec in bf16 fp16 fp8; do run 1 "${prec}_dp1" --precision "$prec" || fail "$prec dp 1: $(tail -1 "$WORK/${prec}_dp1.log")"; done
for cfg in "bf16 2 bf16_z3 --zero 3" "bf16 4 bf16_z2_bf16reduce --zero 2 --grad-reduce bf16" \
           "fp16 4 fp16_z3_accum --zero 3 --micro-batch-size 1" "fp8 2 fp8_z3 --zero 3" \
           "bf16 4 bf16_pp2_z2 --dp 2 --pp 2 --zero 2 --micro-batch-size 2"; do
  set -- $cfg
  prec=$1 np=$2 name=$3
  shift 3
  if run "$np" "$name" --precision "$prec" "$@"; then check "$name vs ${prec} dp1" "${prec}_dp1" "$name" 2e-3
  else fail "$name: $(tail -1 "$WORK/$name.log")"; fi
done
run 1 bf16_nomaster_dp1 --precision bf16 --master-weights 0 && run 2 bf16_nomaster_z3 --precision bf16 --master-weights 0 --zero 3 &&
  check "bf16 without masters, ZeRO-3 vs dp 1" bf16_nomaster_dp1 bf16_nomaster_z3 2e-3 || fail "bf16 without masters: $(tail -1 "$WORK/bf16_nomaster_z3.log")"

grep -q "formula: 4/2 + 2/2 + 4/2 + 8/2 = 9 bytes/parameter" "$WORK/bf16_z3.log" && ok || { fail "ZeRO-3 memory line"; grep memory "$WORK/bf16_z3.log"; }
grep -q "formula: 4 + 4/2 + 8/2 = 10 bytes/parameter" "$WORK/z2.log" && ok || { fail "ZeRO-2 memory line"; grep memory "$WORK/z2.log"; }
grep -q "weights gathered in 4 units (the next prefetched)" "$WORK/z3.log" && ok || { fail "ZeRO-3 layout line"; grep layout "$WORK/z3.log"; }

# resharding
for fmt in parts whole; do
  run 4 "save_$fmt" --zero 3 --steps 20 --save-every 10 --checkpoint-format "$fmt" || fail "dp 4 ZeRO-3 save ($fmt): $(tail -1 "$WORK/save_$fmt.log")"
  resume_check "ZeRO-3 dp 4 ($fmt) resumed at dp 2 ZeRO-1" "save_$fmt" 10 2 "r_dp2_$fmt" --dp 2 --zero 1
  resume_check "ZeRO-3 dp 4 ($fmt) resumed at 1 rank" "save_$fmt" 10 1 "r_dp1_$fmt"
  resume_check "ZeRO-3 dp 4 ($fmt) resumed at dp 2 x tp 2" "save_$fmt" 10 4 "r_dp2tp2_$fmt" --dp 2 --tp 2
done
run 1 one --steps 20 --save-every 10 || fail "dp 1 save: $(tail -1 "$WORK/one.log")"
resume_check "one-rank checkpoint resumed at dp 4 ZeRO-3" one 10 4 one_z3 --dp 4 --zero 3
cp -r "$WORK/save_parts/step_000010" "$WORK/missing"
rm -f "$WORK/missing/part.2-of-4.safetensors"
if mpi 2 train --resume "$WORK/missing" --out "$WORK/missing_run" --dp 2 --zero 3 >"$WORK/missing.log" 2>&1; then
  fail "a checkpoint missing a part resumed"
else
  grep -q "part.2-of-4.safetensors: missing" "$WORK/missing.log" && ok || { fail "missing part message"; tail -3 "$WORK/missing.log"; }
fi

# an unsupported combination: one line
mpi 4 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --dp 2 --pp 2 --zero 3 >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "ZeRO-3 with pipeline parallelism (pp 2) is not supported" "$WORK/bad.err")" -eq 1 ] && ok ||
  { fail "ZeRO-3 with pp: one error line"; cat "$WORK/bad.err"; }

echo "zero_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
