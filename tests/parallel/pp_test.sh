#!/usr/bin/env bash
# Pipeline parallelism end to end under mpirun (oversubscribed, tiny model with 4 layers, a
# global batch of 8 in micro-batches of 2, 30 steps):
#   - pp 2, pp 4, dp 2 x pp 2, tp 2 x pp 2 and dp 2 x tp 2 x pp 2, each with 1F1B and GPipe,
#     with and without recomputation: the fp32 loss curve equals the 1-rank curve to <= 1e-5
#     relative; bf16 within 2e-3 of the bf16 1-rank curve (docs/parallel.md);
#   - a checkpoint saved at dp 2 x tp 2 x pp 2 resumes on 1 rank, at pp 4 and at tp 4, and one
#     saved on 1 rank resumes at dp 2 x tp 2 x pp 2, continuing the same curve (<= 1e-6);
#   - an uneven --pp-layers split trains the same curve; impossible splits are one-line errors;
#     balanced puts fewer layers on the last stage when the LM head is expensive;
#   - SIGUSR1 to mpirun stops a dp 2 x pp 2 job with a checkpoint, which resumes;
#   - the numerics report of a pp 2 run (gathered from the stages) equals the 1-rank report;
#   - the log reports each stage's idle fraction next to the prediction, and recomputation
#     reports less activation memory;
#   - interleaved 1F1B (2 chunks per rank, non-contiguous stages): pp 2 (each recompute
#     setting), tp 2 x pp 2 and dp 2 x pp 2 + ZeRO-1 and ZeRO-2 equal the 1-rank curve (<= 1e-5); its
#     checkpoints (whole and parts) resume on 1 rank and at 1F1B, a 1-rank one resumes
#     interleaved; a micro-batch count that is not a multiple of pp is a one-line error.
# Usage: pp_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
LAYERS=4 STEPS=30 setup pp 4 'micro_batch_size = 2'

run 1 one || fail "1 rank: $(tail -1 "$WORK/one.log")"
for layout in "2 pp2 --dp 1 --pp 2" "4 pp4 --dp 1 --pp 4" "4 dp2pp2 --dp 2 --pp 2" "4 tp2pp2 --dp 1 --tp 2 --pp 2" \
              "8 dp2tp2pp2 --dp 2 --tp 2 --pp 2"; do
  set -- $layout
  np=$1 name=$2
  shift 2
  for variant in "1f1b none" "gpipe none" "1f1b full" "gpipe selective"; do
    set -- $layout
    shift 2
    read -r sched rc <<<"$variant"
    run "$np" "${name}_${sched}_$rc" "$@" --pp-schedule "$sched" --recompute "$rc" &&
      check "$name $sched recompute $rc vs 1 rank" one "${name}_${sched}_$rc" 1e-5 ||
      fail "$name $sched $rc run: $(tail -1 "$WORK/${name}_${sched}_$rc.log")"
  done
done
run 8 dp2tp2pp2_sp_zero --dp 2 --tp 2 --pp 2 --sequence-parallel 1 --zero 1 --recompute selective &&
  check "dp 2 x tp 2 x pp 2 + sequence parallel + ZeRO-1 vs 1 rank" one dp2tp2pp2_sp_zero 1e-5 ||
  fail "dp2 tp2 pp2 sp zero run: $(tail -1 "$WORK/dp2tp2pp2_sp_zero.log")"
grep -q "layout  dp 1 x tp 1 x pp 2 (mpi).*pipeline 1f1b, 4 micro-batches, layers 2,2 per stage" "$WORK/pp2_1f1b_none.log" &&
  ok || fail "the layout line names the pipeline"
grep -q "pipeline idle per stage (mean of 29 steps after the first): stage 0 .*%, stage 1 .*%; predicted 20.0%" \
  "$WORK/pp2_1f1b_none.log" && ok || fail "the log reports the measured and predicted bubble"
/usr/bin/python3 - "$WORK"/pp2_1f1b_{none,full}.log "$WORK"/pp2_gpipe_{none,selective}.log <<'PY' && ok || fail "recomputation reports less activation memory"
import re, sys
a = [float(re.search(r"activations per rank: ([0-9.]+) MiB", open(p).read()).group(1)) for p in sys.argv[1:]]
print(f"  activation memory per rank: 1f1b none {a[0]} MiB, full {a[1]} MiB; gpipe none {a[2]} MiB, selective {a[3]} MiB")
sys.exit(0 if a[1] < a[0] and a[3] < a[2] and a[0] < a[2] else 1)
PY

# bf16: the same layouts in bf16 against bf16 on one rank
run 1 bf16_one --precision bf16 --numerics-report 10 || fail "bf16 1 rank: $(tail -1 "$WORK/bf16_one.log")"
run 2 bf16_pp2 --dp 1 --pp 2 --precision bf16 --numerics-report 10 && check "bf16 pp 2 vs bf16 1 rank" bf16_one bf16_pp2 2e-3 ||
  fail "bf16 pp 2: $(tail -1 "$WORK/bf16_pp2.log")"
# the numerics report of the pipeline (gathered from its stages) is the one-rank report
/usr/bin/python3 - "$WORK"/bf16_{one,pp2}/numerics.jsonl <<'PY' && ok || fail "pp 2 numerics report equals the 1-rank report"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
keys = lambda r: [(x["step"], x["layer"], x["kind"], x["n"]) for x in r]
assert keys(a) == keys(b), "different layers or sizes"
# The two bf16 runs differ by bf16 roundings (the stages sum the tied embedding's gradient in
# another order; on a CPU whose GEMMs block by shape, the products too): amaxes agree to a few
# bf16 steps, the fractions of zero / underflowing / overflowing elements to 1e-3.
amax = max(abs(x["amax"] - y["amax"]) / max(abs(x["amax"]), 1e-30) for x, y in zip(a, b))
frac = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("zero", "underflow", "overflow"))
print(f"  numerics report: {len(a)} lines, the same layers as one rank, amax within {amax:.1e} relative, fractions within {frac:.1e}")
sys.exit(0 if amax <= 5e-2 and frac <= 1e-3 else 1)
PY
run 8 bf16_3d --dp 2 --tp 2 --pp 2 --precision bf16 && check "bf16 dp 2 x tp 2 x pp 2 vs bf16 1 rank" bf16_one bf16_3d 2e-3 ||
  fail "bf16 dp2 tp2 pp2: $(tail -1 "$WORK/bf16_3d.log")"

# uneven and impossible splits
run 2 uneven --dp 1 --pp 2 --pp-layers 1,3 && check "pp 2 split 1,3 vs 1 rank" one uneven 1e-5 ||
  fail "uneven split: $(tail -1 "$WORK/uneven.log")"
# balanced: at C 8 the LM head (2 C Vp) costs 1.6 blocks (24 C^2 + 4 T C): 3 + 1, not 2 + 2
run 2 balanced --dp 1 --pp 2 --pp-layers balanced --n-embd 8 --n-head 2 &&
  grep -q "layers 3,1 per stage" "$WORK/balanced.log" && ok || fail "--pp-layers balanced: $(grep -h layout "$WORK/balanced.log")"
mpi 3 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --pp 3 >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "4 layers do not split evenly into 3 stages; give the split with --pp-layers" "$WORK/bad.err")" -eq 1 ] && ok ||
  { fail "an even split that is impossible: one error line"; cat "$WORK/bad.err"; }
mpi 2 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --pp 2 --pp-layers 2,3 >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "'2,3' holds 5 layers but the model has 4" "$WORK/bad.err")" -eq 1 ] && ok ||
  { fail "a split that drops or adds layers: one error line"; cat "$WORK/bad.err"; }

# checkpoints across layouts
run 8 save3d --dp 2 --tp 2 --pp 2 --save-every 10 || fail "dp2 tp2 pp2 with checkpoints: $(tail -1 "$WORK/save3d.log")"
resume_check "dp 2 x tp 2 x pp 2 checkpoint resumed on 1 rank, steps 11-30" save3d 10 1 r_one --dp 1 --tp 1 --pp 1
resume_check "dp 2 x tp 2 x pp 2 checkpoint resumed at pp 4, steps 11-30" save3d 10 4 r_pp4 --dp 1 --tp 1 --pp 4
resume_check "dp 2 x tp 2 x pp 2 checkpoint resumed at tp 4, steps 11-30" save3d 10 4 r_tp4 --dp 1 --tp 4 --pp 1
run 1 save1 --save-every 10 || fail "1 rank with checkpoints: $(tail -1 "$WORK/save1.log")"
resume_check "1-rank checkpoint resumed at dp 2 x tp 2 x pp 2, steps 11-30" save1 10 8 r_3d --dp 2 --tp 2 --pp 2

# interleaved 1F1B: rank 0 holds layers 0 and 2, rank 1 layers 1 and 3
for rc in none selective full; do
  run 2 il_$rc --dp 1 --pp 2 --pp-schedule interleaved --recompute $rc &&
    check "pp 2 interleaved (2 chunks per rank) recompute $rc vs 1 rank" one il_$rc 1e-5 ||
    fail "interleaved $rc: $(tail -1 "$WORK/il_$rc.log")"
done
run 4 il_tp2 --dp 1 --tp 2 --pp 2 --pp-schedule interleaved --sequence-parallel 1 &&
  check "tp 2 x pp 2 interleaved + sequence parallel vs 1 rank" one il_tp2 1e-5 || fail "tp2 pp2 interleaved: $(tail -1 "$WORK/il_tp2.log")"
run 4 il_dp2 --dp 2 --pp 2 --pp-schedule interleaved --zero 1 --micro-batch-size 1 &&
  check "dp 2 x pp 2 interleaved + ZeRO-1 vs 1 rank" one il_dp2 1e-5 || fail "dp2 pp2 interleaved: $(tail -1 "$WORK/il_dp2.log")"
run 4 il_z2 --dp 2 --pp 2 --pp-schedule interleaved --zero 2 --micro-batch-size 1 &&
  check "dp 2 x pp 2 interleaved + ZeRO-2 vs 1 rank" one il_z2 1e-5 || fail "dp2 pp2 interleaved ZeRO-2: $(tail -1 "$WORK/il_z2.log")"
grep -q "pipeline interleaved, 4 micro-batches, layers 1,1,1,1 per virtual stage (2 chunks per rank" "$WORK/il_none.log" &&
  grep -q "predicted 11.1% = (pp - 1) / (v m + pp - 1)" "$WORK/il_none.log" && ok ||
  fail "the layout line names the chunks and the log the interleaved bubble"
mpi 2 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --pp 2 --pp-schedule interleaved \
  --micro-batch-size 8 >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "the interleaved schedule needs the micro-batches per step (1 = batch_size / (dp x micro_batch_size)) to be a multiple of pp (2)" "$WORK/bad.err")" -eq 1 ] &&
  ok || { fail "interleaved with too few micro-batches: one error line"; cat "$WORK/bad.err"; }
for format in whole parts; do
  run 2 il_save_$format --dp 1 --pp 2 --pp-schedule interleaved --save-every 10 --checkpoint-format $format ||
    fail "interleaved with $format checkpoints: $(tail -1 "$WORK/il_save_$format.log")"
  resume_check "interleaved $format checkpoint resumed on 1 rank" il_save_$format 10 1 il_r1_$format --dp 1 --pp 1 --pp-schedule 1f1b
  resume_check "interleaved $format checkpoint resumed at pp 2 1F1B" il_save_$format 10 2 il_r1f1b_$format --dp 1 --pp 2 --pp-schedule 1f1b
done
resume_check "1-rank checkpoint resumed at pp 2 interleaved" save1 10 2 r_il --dp 1 --pp 2 --pp-schedule interleaved \
  --micro-batch-size 2

# stopping an MPI job without losing it: SIGUSR1 to mpirun reaches every rank, which finish
# the step, save a checkpoint and exit; the checkpoint resumes
"$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np 4 "$MESHLM" train --config "$WORK/tiny.toml" \
  --data "$WORK/data" --out "$WORK/stop" --dp 2 --pp 2 --steps 1000000 >"$WORK/stop.log" 2>&1 &
launcher=$!
for _ in $(seq 300); do
  [ "$(cat "$WORK/stop/metrics.jsonl" 2>/dev/null | grep -c '"loss"')" -ge 5 ] && break
  sleep 0.1
done
kill -USR1 "$launcher"
wait "$launcher"
stopped=$(ls -d "$WORK"/stop/step_* 2>/dev/null | tail -1)
if grep -q "interrupted (SIGUSR1) at step .*; saving a checkpoint" "$WORK/stop.log" && [ -n "$stopped" ]; then
  ok
  step=$(basename "$stopped" | sed 's/step_0*//')
  mpi 4 train --resume "$stopped" --out "$WORK/stop" --steps $((step + 3)) >"$WORK/stop2.log" 2>&1 &&
    grep -q "done    $((step + 3)) steps" "$WORK/stop2.log" && ok || fail "resume the SIGUSR1 checkpoint: $(tail -1 "$WORK/stop2.log")"
else
  fail "SIGUSR1 to mpirun: every rank stops with a checkpoint"
  tail -5 "$WORK/stop.log"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
