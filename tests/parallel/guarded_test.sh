#!/usr/bin/env bash
# The parallel layouts on the guarded cpu backend under mpirun, one rank per process (memory
# protection is per process): dp, ZeRO-1, tp with sequence parallelism, pp (both schedules),
# and dp x tp x pp with ZeRO-1, in fp32 and the 16-bit and fp8 modes. A host access to tensor
# memory above the backend kills the run with the address; the communicator reaches the
# buffers as the backend's declared client. Each guarded run's loss curve must equal the plain
# cpu backend's exactly (the guard changes no number), and a guarded 3-D checkpoint resumes.
# Usage: guarded_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
# OpenMPI's shared-memory single-copy reads would touch a peer's buffers while it has them closed.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
LAYERS=2 STEPS=6 setup guarded 4 'micro_batch_size = 2'

for layout in "2 dp2 --dp 2" "2 dp2_zero --dp 2 --zero 1 --precision bf16" "2 tp2_sp --dp 1 --tp 2 --sequence-parallel 1" \
              "2 pp2 --dp 1 --pp 2 --precision fp16" "4 dp2pp2_gpipe --dp 2 --pp 2 --pp-schedule gpipe --zero 1" \
              "2 fp8_tp2 --dp 1 --tp 2 --precision fp8" "2 dp2_zero3 --dp 2 --zero 3 --precision bf16" \
              "4 dp2tp2_zero2 --dp 2 --tp 2 --zero 2 --grad-reduce bf16" \
              "8 dp2tp2pp2 --dp 2 --tp 2 --pp 2 --zero 1 --precision bf16 --recompute selective --numerics-report 3"; do
  set -- $layout
  np=$1 name=$2
  shift 2
  set -- "$@" --eval-every 3
  run "$np" "$name" "$@" || fail "$name (cpu): $(tail -1 "$WORK/$name.log")"
  if run "$np" "${name}_guarded" "$@" --backend cpu-guarded; then
    check "$name guarded vs cpu" "$name" "${name}_guarded" 0
  else
    fail "$name guarded: $(grep -m1 -h "guarded backend\|error" "$WORK/${name}_guarded.log")"
  fi
done
run 8 save3d --dp 2 --tp 2 --pp 2 --save-every 3 --backend cpu-guarded || fail "guarded 3-D run with checkpoints"
resume_check "guarded dp 2 x tp 2 x pp 2 checkpoint resumed guarded at dp 2 + ZeRO-1" save3d 3 2 r_dp2 \
  --dp 2 --tp 1 --pp 1 --zero 1 --backend cpu-guarded

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
