#!/usr/bin/env bash
# The precision ladder's GEMM formats and plans under mpirun (tiny model, 30 steps; 2 ranks on
# the 2 cores): each format's loss curve at dp 2, tp 2 (with sequence parallelism) and pp 2
# follows its one-rank curve: mxfp8 at dp 2 and pp 2 to rounding (1e-6: its blocks are the
# same on any of these layouts; measured 0), otherwise within 1e-2 (tp: block scales along a
# rank's shard of the reduction; NVFP4: per-shard tensor scales and stochastic rounding drawn
# per rank; measured 8e-5 .. 2.2e-3; docs/numerics.md), and a promotion by the stability rules
# happens on every rank at the same step (a rank that promoted alone would hang the job or
# split the curves). fp8 with real products at tp 2 follows its one-rank curve too.
# Usage: formats_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
STEPS=30 setup formats 4 "micro_batch_size = 4"

for prec in mxfp8 nvfp4+recipe; do
  name=${prec//+/_}
  run 1 "${name}_1" --precision "$prec" || fail "$prec at 1 rank: $(tail -1 "$WORK/${name}_1.log")"
  for cfg in "dp2 --dp 2 --micro-batch-size 4" "tp2 --dp 1 --tp 2 --sequence-parallel 1" "pp2 --dp 1 --pp 2"; do
    set -- $cfg
    layout=$1
    shift
    tol=1e-2
    [ "$prec" = mxfp8 ] && [ "$layout" != tp2 ] && tol=1e-6
    if run 2 "${name}_$layout" --precision "$prec" "$@"; then check "$prec $layout vs 1 rank" "${name}_1" "${name}_$layout" "$tol"
    else fail "$prec $layout: $(tail -1 "$WORK/${name}_$layout.log")"; fi
  done
done
# fp8 with real products (gemm_fp8 on one-byte codes) at tp 2 + SP against one rank: the scales
# are the max over the ranks, so every rank quantizes alike; the sums' order differs.
run 1 fp8real_1 --precision fp8 --fp8-gemm real &&
  run 2 fp8real_tp2 --dp 1 --tp 2 --sequence-parallel 1 --precision fp8 --fp8-gemm real &&
  check "fp8 real tp2 vs 1 rank" fp8real_1 fp8real_tp2 1e-2 || fail "fp8 real: $(tail -1 "$WORK/fp8real_tp2.log")"
# A plan: the first block mxfp8, the rest mxfp4, the head nvfp4.
PLAN="layers.0: mxfp8; head: nvfp4; *: mxfp4"
run 1 plan_1 --precision bf16 --precision-plan "$PLAN" && run 2 plan_tp2 --dp 1 --tp 2 --precision bf16 --precision-plan "$PLAN" &&
  check "precision plan tp2 vs 1 rank" plan_1 plan_tp2 1e-2 || fail "plan: $(tail -1 "$WORK/plan_tp2.log")"
# Promotion agreed by every rank: e4m3 blocks under the OCP rule saturate at step 1.
for cfg in "1 promote_1" "2 promote_dp2 --dp 2 --micro-batch-size 4" "2 promote_tp2 --dp 1 --tp 2"; do
  set -- $cfg
  np=$1 name=$2
  shift 2
  # Spikes are not judged here (--instability-z 100): this model's step-22 batch spikes to a
  # grad norm of 3.0 on one layout and 3.8 on another (measured on an AVX2-only CPU), so the
  # spike rule would skip that step on one and not the other: a test of its threshold, not of
  # the layout. The saturation rule that promotes at step 1 is unaffected.
  if run "$np" "$name" --precision mxfp8+ocp --on-instability promote --instability-z 100 "$@"; then
    /usr/bin/python3 - "$WORK/$name/metrics.jsonl" <<'PY' && ok || fail "$name: the promotion is not at step 1 alone"
import json, sys
steps = [d for d in map(json.loads, open(sys.argv[1])) if "loss" in d]
assert steps[0].get("instability_action") == "promote", steps[0]
# Later steps may flag a gradient-norm spike (this model's step-22 batch spikes in fp32 too, by
# 1.7x to 12x depending on rounding), with nothing left to promote; no other rule may fire.
later = [d for d in steps[1:] if "instability" in d]
assert all(d["instability"] == ["grad-norm spike"] for d in later), [(d["step"], d["instability"]) for d in later]
PY
    grep -q "promoted 8 sites mxfp8+ocp -> bf16" "$WORK/$name.log" && [ "$(grep -c "promoted [0-9]* sites" "$WORK/$name.log")" = 1 ] &&
      ok || fail "$name: every site promoted to bf16, once"
  else
    fail "$name: $(tail -1 "$WORK/$name.log")"
  fi
done
# bf16 after the promotion: dp 2 sums the gradients in another order (measured 2.4e-4), tp 2 also
# splits the products (8.3e-4; the formats' tp tolerance above).
check "promoted dp2 vs 1 rank" promote_1 promote_dp2 1e-3
check "promoted tp2 vs 1 rank" promote_1 promote_tp2 1e-2

echo "formats_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
