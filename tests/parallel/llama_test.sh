#!/usr/bin/env bash
# Llama under mpirun (oversubscribed; a tiny Llama: 4 layers, 4 query heads over 2 key/value
# heads, C32, SwiGLU 64, a global batch of 8 in micro-batches of 2, 30 steps):
#   - tp 2 (kv heads split), tp 4 (each kv head shared by 2 ranks), tp 2 + sequence parallel,
#     pp 2, dp 2 x tp 2 x pp 2, dp 2 + ZeRO-1, multi-query at tp 2, and a tied head at pp 2:
#     the fp32 loss curve equals the 1-rank curve to <= 1e-5 relative;
#   - bf16 at tp 2 and at dp 2 x tp 2 x pp 2 within 2e-3 of bf16 on 1 rank (docs/parallel.md);
#   - a tp that neither divides n_kv_head nor is a multiple of it is a one-line error naming both;
#   - a checkpoint saved at dp 2 x tp 2 x pp 2 resumes on 1 rank and at tp 4, one saved on 1
#     rank at tp 2 x pp 2, continuing the same curve (<= 1e-6).
# Usage: llama_test.sh path/to/meshlm path/to/mpirun repo_root
set -uo pipefail
source "$(dirname "$0")/mpi_helpers.sh"
LAYERS=4 STEPS=30 setup llama 4 'micro_batch_size = 2
arch = "llama"
n_kv_head = 2
ffn_hidden = 64
rope_theta = 10000.0'

run 1 one || fail "1 rank: $(tail -1 "$WORK/one.log")"
for layout in "2 tp2 --dp 1 --tp 2" "4 tp4 --dp 1 --tp 4" "2 tp2sp --dp 1 --tp 2 --sequence-parallel 1" \
              "2 pp2 --dp 1 --pp 2" "8 dp2tp2pp2 --dp 2 --tp 2 --pp 2" "2 dp2zero --dp 2 --zero 1" \
              "8 dp2tp2pp2_sp_zero --dp 2 --tp 2 --pp 2 --sequence-parallel 1 --zero 1 --recompute selective"; do
  set -- $layout
  np=$1 name=$2
  shift 2
  run "$np" "$name" "$@" && check "llama $name vs 1 rank" one "$name" 1e-5 || fail "llama $name: $(tail -1 "$WORK/$name.log")"
done
grep -q "model   llama L4 H4 KV2 C32" "$WORK/tp2.log" && ok || fail "the model line names the family and the kv heads"
# multi-query attention (one kv head, shared by both ranks) and a tied head across the pipeline ends
run 1 mqa_one --n-kv-head 1 || fail "mqa 1 rank: $(tail -1 "$WORK/mqa_one.log")"
run 2 mqa_tp2 --dp 1 --tp 2 --n-kv-head 1 && check "llama multi-query tp 2 vs 1 rank" mqa_one mqa_tp2 1e-5 ||
  fail "mqa tp 2: $(tail -1 "$WORK/mqa_tp2.log")"
run 1 tied_one --tie-embeddings 1 || fail "tied 1 rank: $(tail -1 "$WORK/tied_one.log")"
run 2 tied_pp2 --dp 1 --pp 2 --tie-embeddings 1 && check "llama tied head pp 2 vs 1 rank" tied_one tied_pp2 1e-5 ||
  fail "tied pp 2: $(tail -1 "$WORK/tied_pp2.log")"

# bf16
run 1 bf16_one --precision bf16 || fail "bf16 1 rank: $(tail -1 "$WORK/bf16_one.log")"
run 2 bf16_tp2 --dp 1 --tp 2 --precision bf16 && check "llama bf16 tp 2 vs bf16 1 rank" bf16_one bf16_tp2 2e-3 ||
  fail "bf16 tp 2: $(tail -1 "$WORK/bf16_tp2.log")"
run 8 bf16_3d --dp 2 --tp 2 --pp 2 --precision bf16 && check "llama bf16 dp 2 x tp 2 x pp 2 vs bf16 1 rank" bf16_one bf16_3d 2e-3 ||
  fail "bf16 dp2 tp2 pp2: $(tail -1 "$WORK/bf16_3d.log")"

# kv heads that do not fit the tensor-parallel ranks
mpi 3 train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/bad" --tp 3 --n-head 6 --n-embd 48 \
  >"$WORK/bad.out" 2>"$WORK/bad.err"
[ "$(grep -c "n_kv_head (2) and tp (3) do not fit" "$WORK/bad.err")" -ge 1 ] && ok ||
  { fail "kv heads that do not split over tp: an error naming both"; cat "$WORK/bad.err"; }

# checkpoints across layouts
run 8 save3d --dp 2 --tp 2 --pp 2 --save-every 10 || fail "dp2 tp2 pp2 with checkpoints: $(tail -1 "$WORK/save3d.log")"
resume_check "llama dp 2 x tp 2 x pp 2 checkpoint resumed on 1 rank, steps 11-30" save3d 10 1 r_one --dp 1 --tp 1 --pp 1
resume_check "llama dp 2 x tp 2 x pp 2 checkpoint resumed at tp 4 (shared kv heads), steps 11-30" save3d 10 4 r_tp4 \
  --dp 1 --tp 4 --pp 1
run 1 save1 --save-every 10 || fail "1 rank with checkpoints: $(tail -1 "$WORK/save1.log")"
resume_check "llama 1-rank checkpoint resumed at tp 2 x pp 2, steps 11-30" save1 10 4 r_tp2pp2 --dp 1 --tp 2 --pp 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
