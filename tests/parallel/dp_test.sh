#!/usr/bin/env bash
# Data parallelism end to end under mpirun (oversubscribed on the 2-core machine, tiny model):
#   - the loss curve of dp = 2 and dp = 4, with and without ZeRO-1, with accumulation, equals
#     dp = 1's on the same global batch to <= 1e-5 relative over 50 steps (fp32); bf16 within
#     2e-3 (docs/parallel.md says why);
#   - bf16 gradient reduction stays within 2e-3 as well;
#   - resume: 20 steps at dp = 4 with ZeRO-1 (each rank writes its optimizer slice), saved at
#     10, resumed at dp = 2 without ZeRO and at dp = 1, and a one-rank checkpoint resumed at
#     dp = 4 with ZeRO-1: the continuations equal the uninterrupted runs to <= 1e-6 relative;
#   - failures: a wrong layout is one line from rank 0 and every rank exits non-zero; an error
#     on one rank aborts the job instead of hanging it.
# Usage: dp_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
setup dp 2 "bucket_mb = 0.01   # 2,500 floats: the tiny model's 34k gradients make 14 buckets"

run 1 dp1 && ok || fail "dp 1: $(tail -1 "$WORK/dp1.log")"
for cfg in "2 dp2" "4 dp4" "4 dp4_accum --micro-batch-size 1" "2 dp2_zero --zero 1" \
           "4 dp4_zero_accum --zero 1 --micro-batch-size 1" "2 dp2_noverlap --overlap 0"; do
  set -- $cfg
  np=$1 name=$2
  shift 2
  if run "$np" "$name" "$@"; then
    echo "$name vs dp1:"
    compare dp1 "$name" 1e-5 && ok || fail "$name differs from dp 1"
  else
    fail "$name: $(tail -1 "$WORK/$name.log")"
  fi
done
grep -q "gradient buckets of 0.01 MB" "$WORK/dp2.log" && ok || { fail "the bucket count is reported"; grep layout "$WORK/dp2.log"; }
grep -q "bytes/parameter held (formula: 4 + 4 + 8/2 = 12 bytes/parameter)" "$WORK/dp2_zero.log" && ok || fail "ZeRO-1 memory line"

# bf16: compute and gradient reduction in 16 bits
run 1 bf16_dp1 --precision bf16 && run 2 bf16_dp2 --precision bf16 --grad-reduce bf16 &&
  { echo "bf16 dp2 (bf16 reduction) vs bf16 dp1:"; compare bf16_dp1 bf16_dp2 2e-3 && ok || fail "bf16 dp 2"; } ||
  fail "bf16 runs: $(tail -1 "$WORK/bf16_dp2.log")"

# ZeRO-1 in bf16 all-gathers the 16-bit weights; the masters are gathered for checkpoints
run 2 bf16_dp2_zero --precision bf16 --zero 1 --save-every 25 &&
  { echo "bf16 dp2 ZeRO-1 vs bf16 dp1:"; compare bf16_dp1 bf16_dp2_zero 2e-3 && ok || fail "bf16 dp 2 ZeRO-1"; } ||
  fail "bf16 ZeRO-1 run: $(tail -1 "$WORK/bf16_dp2_zero.log")"
if timeout 300 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np 1 "$MESHLM" train \
     --resume "$WORK/bf16_dp2_zero/step_000025" --out "$WORK/bf16_r1" --dp 1 --zero 0 >"$WORK/bf16_r1.log" 2>&1; then
  echo "bf16 ZeRO-1 checkpoint (step 25) resumed at dp 1:"
  compare bf16_dp2_zero bf16_r1 2e-3 25 && ok || fail "bf16 ZeRO-1 resume"
else
  fail "bf16 ZeRO-1 resume: $(tail -1 "$WORK/bf16_r1.log")"
fi

# resume across layouts
run 4 r4 --zero 1 --steps 20 --save-every 10 || fail "dp 4 ZeRO-1 run: $(tail -1 "$WORK/r4.log")"
resume_check "resumed at dp 2 vs the dp 4 ZeRO-1 run, steps 11-20" r4 10 2 r2 --dp 2 --zero 0
resume_check "resumed at dp 1 vs the dp 4 ZeRO-1 run, steps 11-20" r4 10 1 r1 --dp 1 --zero 0

[ "$(ls "$WORK"/r4/step_000010/optimizer.rank*-of-4.safetensors 2>/dev/null | wc -l)" -eq 4 ] &&
  [ ! -e "$WORK/r4/step_000010/optimizer.safetensors" ] && ok || fail "ZeRO-1: each rank writes its optimizer slice"
# and the other way: a one-rank checkpoint (whole optimizer file) resumed at dp 4 with ZeRO-1
run 1 p1 --steps 20 --save-every 10 || fail "dp 1 run with a save: $(tail -1 "$WORK/p1.log")"
resume_check "one-rank checkpoint resumed at dp 4 with ZeRO-1 vs the one-rank run, steps 11-20" p1 10 4 p4 --dp 4 --zero 1

# failures
timeout 60 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np 2 "$MESHLM" train \
  --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --dp 3 --batch-size 12 >"$WORK/bad.out" 2>"$WORK/bad.err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || fail "a wrong layout exits non-zero (rc $rc)"
[ "$(grep -c "needs 3 ranks, but the job has 2" "$WORK/bad.err")" -eq 1 ] && ok || { fail "one error line from rank 0"; cat "$WORK/bad.err"; }
# rank 0 alone refuses the run directory (it holds a run): the job must end, not hang
timeout 60 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np 2 "$MESHLM" train \
  --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/dp2" --dp 2 >"$WORK/abort.out" 2>"$WORK/abort.err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || fail "an error on one rank aborts the job (rc $rc)"
grep -q "error on rank 0 of 2: .*already holds a run" "$WORK/abort.err" && ok || { fail "the failing rank names itself"; cat "$WORK/abort.err"; }

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
