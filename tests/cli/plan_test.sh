#!/usr/bin/env bash
# `meshlm plan` and `--layout auto` from the command line, on a machine profile checked into the
# tests (tests/data/machine_profile.json: this project's 2-core machine calibrated at 1 and 2
# ranks; not recalibrated here, so the result does not depend on the machine running the test):
#   - plan prints a ranked table of the valid layouts, --explain a breakdown, and is refused
#     with the calibration command for a rank count the profile lacks;
#   - train --layout auto on 1 rank and under mpirun on 2 ranks runs the planner's first choice
#     and says so; that choice is the first row of `meshlm plan` for the same job;
#   - --calibrate --quick writes a profile that plan then reads (on 1 rank, seconds);
#   - a cluster preset and a cluster TOML: --predict prices one layout, the search ranks layouts
#     of 64 GPUs; a TOML missing a key is a one-line error naming it.
# Usage: plan_test.sh path/to/meshlm repo_root [mpirun]
set -uo pipefail
MESHLM="$1"
ROOT="$2"
MPIRUN="${3:-}"
source "$(dirname "$0")/helpers.sh" plan
export OMP_NUM_THREADS=1
PROFILE="$ROOT/tests/data/machine_profile.json"
head -c 100000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
"$MESHLM" prepare --tokenizer bytes --input "$WORK/small.txt" --output "$WORK/data" >/dev/null || exit 1
model=(--n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 --batch-size 8 --vocab-size 256)

expect_ok "plan prints a table" "$MESHLM" plan "${model[@]}" --ranks 2 --machine "$PROFILE" --top 5 --explain 1
grep -q "^1 " "$WORK/out" && grep -q "layouts of 2 ranks" "$WORK/out" && grep -q "predicted ms per step" "$WORK/out" && ok ||
  { fail "plan's table"; cat "$WORK/out"; }
first=$(awk '$1 == "1" { $1 = ""; print }' "$WORK/out" | awk '{print $1, $2, $3, $4, $5, $6, $7, $8}')
expect_error "plan for a rank count the profile lacks" "calibrate it: mpirun -np 3" \
  "$MESHLM" plan "${model[@]}" --ranks 3 --machine "$PROFILE"

expect_ok "train --layout auto, 1 rank" "$MESHLM" train "${model[@]}" --data "$WORK/data" --out "$WORK/auto1" --steps 3 \
  --eval-batches 0 --layout auto --machine "$PROFILE" --peak-gflops 100
grep -q "^layout  auto: 1x1x1" "$WORK/out" && ok || { fail "auto layout line (1 rank)"; grep layout "$WORK/out"; }
if [ -n "$MPIRUN" ]; then
  expect_ok "train --layout auto, 2 ranks" timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
    "$MESHLM" train "${model[@]}" --data "$WORK/data" --out "$WORK/auto2" --steps 3 --eval-batches 0 --layout auto \
    --machine "$PROFILE" --peak-gflops 100
  chosen=$(grep "^layout  auto:" "$WORK/out" | sed 's/^layout  auto: //; s/, predicted.*//')
  [ -n "$chosen" ] && [ "$(echo "$first" | cut -c1-${#chosen})" = "$chosen" ] && ok ||
    { fail "the auto layout ($chosen) is plan's first row ($first)"; grep layout "$WORK/out"; }
fi

expect_ok "calibrate on 1 rank" "$MESHLM" plan --calibrate --quick --machine "$WORK/m.json"
expect_ok "plan reads the fresh profile" "$MESHLM" plan "${model[@]}" --ranks 1 --machine "$WORK/m.json" --top 3

gpt3=(--n-layer 96 --n-head 96 --n-embd 12288 --vocab-size 51200 --max-seq-len 2048 --seq-len 2048 --batch-size 64 --precision bf16)
expect_ok "plan --predict on the a100-80gb preset" "$MESHLM" plan "${gpt3[@]}" --machine a100-80gb --predict \
  --tp 8 --pp 8 --micro-batch-size 1 --recompute selective --sequence-parallel 1
grep -q "^predicted 1x8x8 mb 1 zero 0 rc selective sp 1f1b: [0-9.]* ms per step" "$WORK/out" && grep -q "tp comm" "$WORK/out" && ok ||
  { fail "the --predict line"; cat "$WORK/out"; }
cat > "$WORK/cluster.toml" <<'TOML'
name = "test cluster: 4 x 2 devices"
devices_per_node = 2
[device]
peak_tflops = { fp32 = 10.0, bf16 = 100.0 }
gemm_efficiency = 0.7
tile = 64
memory_gib = 16
memory_gbs = 800
attention_score_passes = 0
[node]
bus_gbs = 100
latency_us = 5
[network]
nic_gbs = 10
latency_us = 10
TOML
expect_ok "plan on a cluster TOML" "$MESHLM" plan "${model[@]}" --ranks 8 --machine "$WORK/cluster.toml" --top 3
grep -q "layouts of 8 ranks.*test cluster: 4 x 2 devices" "$WORK/out" && grep -q "^1 " "$WORK/out" && ok ||
  { fail "the cluster's table"; cat "$WORK/out"; }
grep -v "gemm_efficiency" "$WORK/cluster.toml" > "$WORK/bad.toml"
expect_error "a cluster TOML without a key" "cluster key device.gemm_efficiency (a number) is missing" \
  "$MESHLM" plan "${model[@]}" --ranks 8 --machine "$WORK/bad.toml"

echo "plan_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
