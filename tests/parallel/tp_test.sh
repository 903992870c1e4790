#!/usr/bin/env bash
# Tensor parallelism end to end under mpirun (oversubscribed, tiny model with 4 heads):
#   - tp = 2, tp = 4 and dp = 2 x tp = 2, with and without sequence parallelism (and with
#     ZeRO-1): the fp32 loss curve equals the 1-rank curve to <= 1e-5 relative over 50 steps;
#     bf16 at tp = 2 within 2e-3; sequence parallelism reports less activation memory;
#   - a checkpoint saved at dp = 2 x tp = 2 (whole tensors) resumes at tp = 4, at dp = 4 and on
#     1 rank, continuing the same curve (<= 1e-6);
#   - a head count that does not split is a one-line error.
# Usage: tp_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
setup tp 4

run 1 one || fail "1 rank: $(tail -1 "$WORK/one.log")"
run 2 tp2 --dp 1 --tp 2 && check "tp 2 vs 1 rank" one tp2 1e-5 || fail "tp 2 run: $(tail -1 "$WORK/tp2.log")"
run 4 tp4 --dp 1 --tp 4 && check "tp 4 vs 1 rank" one tp4 1e-5 || fail "tp 4 run: $(tail -1 "$WORK/tp4.log")"
run 4 dp2tp2 --dp 2 --tp 2 --save-every 10 && check "dp 2 x tp 2 vs 1 rank" one dp2tp2 1e-5 ||
  fail "dp 2 x tp 2 run: $(tail -1 "$WORK/dp2tp2.log")"
grep -q "layout  dp 2 x tp 2 x pp 1 (mpi).*tensor parallel" "$WORK/dp2tp2.log" && ok || fail "the layout line names tp"
run 4 dp2tp2z --dp 2 --tp 2 --zero 1 --save-every 10 && check "dp 2 x tp 2 with ZeRO-1 vs 1 rank" one dp2tp2z 1e-5 ||
  fail "dp 2 x tp 2 ZeRO-1 run: $(tail -1 "$WORK/dp2tp2z.log")"
resume_check "its checkpoint resumed at dp 2 x tp 2 without ZeRO, steps 11-50" dp2tp2z 10 4 z_dp2tp2 --dp 2 --tp 2 --zero 0
# sequence parallelism
run 2 tp2sp --dp 1 --tp 2 --sequence-parallel 1 && check "tp 2 + sequence parallel vs 1 rank" one tp2sp 1e-5 ||
  fail "tp 2 sp run: $(tail -1 "$WORK/tp2sp.log")"
run 4 tp4sp --dp 1 --tp 4 --sequence-parallel 1 && check "tp 4 + sequence parallel vs 1 rank" one tp4sp 1e-5 ||
  fail "tp 4 sp run: $(tail -1 "$WORK/tp4sp.log")"
run 4 dp2tp2sp --dp 2 --tp 2 --sequence-parallel 1 && check "dp 2 x tp 2 + sequence parallel vs 1 rank" one dp2tp2sp 1e-5 ||
  fail "dp 2 x tp 2 sp run: $(tail -1 "$WORK/dp2tp2sp.log")"
/usr/bin/python3 - "$WORK/tp2.log" "$WORK/tp2sp.log" <<'PY' && ok || fail "sequence parallel reports less activation memory per rank"
import re, sys
a, b = (float(re.search(r"activations per rank: ([0-9.]+) MiB", open(p).read()).group(1)) for p in sys.argv[1:])
print(f"  activation memory per rank: tp 2 {a} MiB, tp 2 + sequence parallel {b} MiB")
sys.exit(0 if b < a else 1)
PY
run 1 bf16_one --precision bf16 && run 2 bf16_tp2 --dp 1 --tp 2 --precision bf16 &&
  check "bf16 tp 2 vs bf16 1 rank" bf16_one bf16_tp2 2e-3 || fail "bf16 runs: $(tail -1 "$WORK/bf16_tp2.log")"

# resume the dp 2 x tp 2 checkpoint of step 10 in other layouts
for cfg in "4 r_tp4 --dp 1 --tp 4" "4 r_dp4 --dp 4 --tp 1" "1 r_one --dp 1 --tp 1"; do
  set -- $cfg
  resume_check "dp 2 x tp 2 checkpoint resumed as $2, steps 11-50" dp2tp2 10 "$@"
done

mpi 2 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --tp 2 --n-head 3 --n-embd 24 \
  >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "n_head (3) must be a multiple of tp (2)" "$WORK/bad.err")" -eq 1 ] && ok ||
  { fail "heads that do not split: one error line"; cat "$WORK/bad.err"; }

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
