#!/usr/bin/env bash
# The CUDA backend's check on a lent GPU (docs/cuda.md), about 4 minutes on one H200:
#   1. builds libmeshlm_cuda.so there with all cores (MESHLM_CUDA_ONLY: the toolkit alone) for
#      the GPU's architecture, falling back to the bundle's sm_90a one;
#   2. `meshlm info`, then every kernel test on the cuda backend (test_kernels --gtest_filter
#      'Cuda/*': each op against the double-precision oracle with derived tolerances, and the
#      backward kernels twice for bit-identity; 16-bit attention on tensor cores, and again with
#      MESHLM_CUDA_ATTENTION=simple on the warp-per-row kernels), and the real fp8 operands (test_fp8_gemm: codes
#      bit for bit, cuBLASLt's fp8 GEMMs against double) and the block-scaled quantizer of the
#      precision ladder (test_quantize: bit for bit against the reference);
#   3. a 10-step tiny training on the cpu and the cuda backend (fp32, bf16, and fp8 with real
#      fp8 GEMMs): the losses must agree within the documented tolerance; and 5 + 5 steps resumed
#      on cuda must equal 10 in one go, bit for bit;
#   4. GPT-2 124M: `meshlm bench` bf16 and fp32 at B 16 and 32, T 1024, MFU against the measured
#      GEMM peak, and the PyTorch reference model (bench/pytorch_gpt2.py) eager and compiled
#      where the machine's Python has a CUDA PyTorch; then a wider model (4 layers of 2048
#      channels, B 16, T 1024) in bf16 and in fp8 with real fp8 GEMMs, side by side.
# Needs build-gpu/bundle.tar.xz (scripts/gpu_bundle.sh, made on a build machine). Writes the
# results to $OUT/gpu_check/ (or build-gpu/check/): summary.md and the raw logs.
# Usage: bash scripts/gpu_check.sh [--no-bench]
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH=1
[ "${1:-}" = "--no-bench" ] && BENCH=0
R="${OUT:-build-gpu}/gpu_check"
mkdir -p "$R"
S="$R/summary.md"
: >"$S"
say() { echo "$*" | tee -a "$S"; }
fail=0
check() { if "$@"; then say "- PASS: $*"; else say "- FAIL: $*"; fail=1; fi; }

B=build-gpu/bundle
[ -d "$B" ] || tar -C build-gpu -xJf build-gpu/bundle.tar.xz || { say "no build-gpu/bundle.tar.xz: run scripts/gpu_bundle.sh first"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$R/gpu.txt" || true

# The programs run on the machine's glibc when it is new enough, else on the bundle's.
RUNNER=()
export LD_LIBRARY_PATH="$PWD/$B/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
if ! "$B/meshlm" --help >/dev/null 2>"$R/loader.txt"; then
  RUNNER=("$B/glibc/ld-linux-x86-64.so.2" --library-path "$PWD/$B/glibc:$LD_LIBRARY_PATH")
  say "the machine's glibc is too old for the bundle ($(head -c 200 "$R/loader.txt")); running on the bundle's"
fi
run() { "${RUNNER[@]}" "$@"; }

# 1. the CUDA library, built here with all cores (the bundle's sm_90a one if that fails)
export MESHLM_CUDA_LIBRARY="$PWD/$B/libmeshlm_cuda.so"
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
[ "$ARCH" = "90" ] && ARCH=90a
t0=$(date +%s)
if command -v nvcc >/dev/null && cmake -S . -B build-gpu/cuda -G Ninja -DMESHLM_CUDA_ONLY=ON \
     -DMESHLM_CUDA_ARCHS="${ARCH:-90a}" >"$R/cuda_build.txt" 2>&1 &&
   cmake --build build-gpu/cuda -j "$(nproc)" >>"$R/cuda_build.txt" 2>&1; then
  if MESHLM_CUDA_LIBRARY="$PWD/build-gpu/cuda/libmeshlm_cuda.so" run "$B/meshlm" info 2>&1 | grep -q "usable"; then
    export MESHLM_CUDA_LIBRARY="$PWD/build-gpu/cuda/libmeshlm_cuda.so"
  fi
fi
say "## meshlm CUDA check ($(date -u +%F), $(cat "$R/gpu.txt" 2>/dev/null))"
say "- CUDA library: $MESHLM_CUDA_LIBRARY (build $(( $(date +%s) - t0 )) s, sm_${ARCH:-90a})"
run "$B/meshlm" info 2>&1 | tee "$R/info.txt"

# 2. every kernel against the oracle, and bit-identity
# gtest's closing lines of each (its log in $R), below its PASS or FAIL line.
tests() {
  local log=$1
  shift
  check run "$@" --gtest_brief=1 >"$R/$log" 2>&1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$R/$log" | sed 's/^/    /' | tee -a "$S"
  if grep -q '^\[  SKIPPED \]' "$R/$log"; then say "- FAIL: skipped cases (no usable GPU?)"; fail=1; fi
}
tests kernels.txt "$B/test_kernels" --gtest_filter='Cuda/*'
MESHLM_CUDA_ATTENTION=simple tests kernels_simple_attention.txt "$B/test_kernels" --gtest_filter='Cuda/*Attention*'
tests fp8_gemm.txt "$B/test_fp8_gemm" --gtest_filter='Cuda/*'
tests quantize.txt "$B/test_quantize" --gtest_filter='*Cuda*'

# 3. tiny training: cpu vs cuda, and resume on cuda
D=build-gpu/tiny
run "$B/meshlm" prepare --tokenizer bytes --input data/tinyshakespeare.txt --output "$D/data" >"$R/prepare.txt" 2>&1
TINY=(--data "$D/data" --n-layer 2 --n-head 4 --n-embd 64 --seq-len 64 --batch-size 8 --lr 1e-3 --seed 1
      --eval-every 0 --save-every 5)
for prec in fp32 bf16 fp8; do
  run "$B/meshlm" train "${TINY[@]}" --precision $prec --fp8-gemm real --steps 10 --backend cpu --out "$D/cpu_$prec" --overwrite >"$R/train_cpu_$prec.txt" 2>&1
  run "$B/meshlm" train "${TINY[@]}" --precision $prec --fp8-gemm real --steps 10 --backend cuda --out "$D/cuda_$prec" --overwrite >"$R/train_cuda_$prec.txt" 2>&1
  tol=$([ $prec = fp32 ] && echo 2e-4 || echo 2e-2)
  check python3 - "$D/cpu_$prec/metrics.jsonl" "$D/cuda_$prec/metrics.jsonl" "$tol" <<'PY'
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if '"loss"' in l and "val_loss" not in l]
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
print("cpu ", a); print("cuda", b)
sys.exit(0 if len(a) == len(b) == 10 and all(abs(x - y) <= tol * abs(x) for x, y in zip(a, b)) else 1)
PY
done
run "$B/meshlm" train "${TINY[@]}" --precision bf16 --steps 5 --backend cuda --out "$D/resume" --overwrite >"$R/resume1.txt" 2>&1
run "$B/meshlm" train "${TINY[@]}" --precision bf16 --steps 10 --backend cuda --out "$D/resume" --resume "$D/resume" >"$R/resume2.txt" 2>&1
check python3 -c 'import json,sys
l=lambda p:[json.loads(x)["loss"] for x in open(p) if "\"loss\"" in x and "val_loss" not in x]
a,b=l(sys.argv[1]),l(sys.argv[2]); print(a[-5:], b[-5:]); sys.exit(0 if a[-5:]==b[-5:] else 1)' \
  "$D/cuda_bf16/metrics.jsonl" "$D/resume/metrics.jsonl"

# 4. GPT-2 124M
if [ $BENCH = 1 ]; then
  say ""
  say "| run | B | tokens/s | ms/step | MFU |"
  say "|---|---|---|---|---|"
  G=(--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 1024 --max-seq-len 1024 --warmup 2 --timed-steps 5)
  for prec in bf16 fp32; do
    for bs in 16 32; do
      run "$B/meshlm" bench --backend cuda "${G[@]}" --batch-size $bs --precision $prec --json --peak-cache "$R/peaks.json" \
        >"$R/bench_${prec}_$bs.json" 2>"$R/bench_${prec}_$bs.err" &&
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("| meshlm %s | %s | %.0f | %.1f | %.0f%% |" % (sys.argv[2], sys.argv[3], j["tokens_per_s"], j["ms_per_step"], 100*j["mfu"]))' \
          "$R/bench_${prec}_$bs.json" $prec $bs | tee -a "$S" || say "| meshlm $prec | $bs | failed: $(tail -1 "$R/bench_${prec}_$bs.err") | | |"
    done
  done
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    for c in "" --compile; do
      python3 bench/pytorch_gpt2.py --device cuda --precision bf16 --batch-size 16 --seq-len 1024 --timed-steps 5 $c \
        >"$R/torch$c.json" 2>"$R/torch$c.err" &&
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("| PyTorch %s %s bf16 | 16 | %.0f | %.1f | |" % (j["torch"], "compile" if j["compile"] else "eager", j["tokens_per_s"], j["ms_per_step"]))' \
          "$R/torch$c.json" | tee -a "$S" || say "| PyTorch$c | 16 | failed: $(tail -1 "$R/torch$c.err") | | |"
    done
  else
    say "(no CUDA PyTorch on this machine: the PyTorch rows are missing)"
  fi
  say "(reference: llm.c's 8 x H100 GPT-2 124M run, about 470K tokens/s per GPU)"
  # fp8 where its GEMMs dominate: 4 layers of 2048 channels, bf16 against real fp8 GEMMs.
  W=(--n-layer 4 --n-head 16 --n-embd 2048 --vocab-size 50257 --seq-len 1024 --max-seq-len 1024 --warmup 2 --timed-steps 5
     --batch-size 16)
  for prec in bf16 fp8; do
    run "$B/meshlm" bench --backend cuda "${W[@]}" --precision $prec --fp8-gemm real --json --peak-cache "$R/peaks.json" \
      >"$R/bench_wide_$prec.json" 2>"$R/bench_wide_$prec.err" &&
      python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("| meshlm %s, 4 x 2048 | 16 | %.0f | %.1f | %.0f%% |" % (sys.argv[2], j["tokens_per_s"], j["ms_per_step"], 100*j["mfu"]))' \
        "$R/bench_wide_$prec.json" $prec | tee -a "$S" || say "| meshlm $prec, 4 x 2048 | 16 | failed: $(tail -1 "$R/bench_wide_$prec.err") | | |"
  done
  say "(fp8 MFU is against the bf16 GEMM peak)"
fi
say ""
say "gpu_check: $([ $fail = 0 ] && echo PASSED || echo FAILED) (results in $R)"
exit $fail
