#!/usr/bin/env bash
# meshlm against PyTorch on this CPU, side by side, in one run. For each config (tiny: L4 H4
# C256 V4096 T256 B8; gpt2-124M: L12 H12 C768 V50257 T256 B4; llama-150M: configs/llama_150m.toml's
# shape, L12 H12 KV4 C768 SwiGLU 2048 V50257 T256 B4) and precision (fp32, bf16 autocast), these
# run alternately, ROUNDS times, 2 threads each, and the medians of the rounds are tabled:
#   meshlm        `meshlm bench`
#   torch2        bench/pytorch_gpt2.py (pytorch_llama.py for the Llama) on the current PyTorch
#                 from PyPI, eager (SDPA attention, fused AdamW where it has them)
#   torch2-compile  the same under torch.compile (Inductor's C++/OpenMP code)
#   torch1.13     the same script on Debian's python3-torch 1.13 (for continuity with earlier
#                 tables; TORCH1=0 skips it)
# The current PyTorch goes into a virtual environment under the build directory
# ($BUILD/torch2-venv, a few GB with the CUDA libraries PyPI's wheel depends on; once); Debian's
# python3-torch and OpenBLAS are installed with apt if missing. Neither is a dependency of meshlm.
# PyTorch 1.13's fp32 gets OPENBLAS_CORETYPE=Cooperlake on AVX512-BF16 CPUs (Debian's OpenBLAS
# otherwise may pick a generic kernel on a Zen 4).
# Usage: bench/compare.sh [build-dir] [rounds] [timed-steps]
#   CONFIGS="tiny gpt2-124M" TOOLS="meshlm torch2" narrow the run.
set -euo pipefail
BUILD="${1:-build}"
ROUNDS="${2:-2}"
STEPS="${3:-6}"
cd "$(dirname "$0")/.."
TOOLS=(${TOOLS:-meshlm torch2 torch2-compile torch1.13})
[ "${TORCH1:-1}" = 0 ] && TOOLS=("${TOOLS[@]/torch1.13}")
VENV="$BUILD/torch2-venv"
wants() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }
if { wants torch2 || wants torch2-compile; } && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing the current PyTorch from PyPI into $VENV (for this comparison only)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch numpy
fi
if wants torch1.13 && { ! /usr/bin/python3 -c "import torch" 2>/dev/null || ! dpkg -s libopenblas0-openmp >/dev/null 2>&1; }; then
  # Without an optimized BLAS Debian's torch runs on the reference netlib BLAS (~2.6 GFLOP/s
  # here, 40x slower): OpenBLAS comes with it.
  echo "installing python3-torch and libopenblas0-openmp (for this comparison only)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-openmp >/dev/null
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); features: $(grep -m1 -ow -E 'avx2|avx512f|avx512_bf16|avx512_fp16|amx_bf16|amx_fp16' /proc/cpuinfo | sort -u | xargs)"
wants torch2 && echo "PyTorch 2: $("$VENV/bin/python" -c 'import re, torch; c = torch.__config__.show(); print(torch.__version__, *(m.group(0) for m in [re.search(r"MKL-DNN v[0-9.]+", c), re.search(r"Math Kernel Library Version [0-9.]+", c)] if m))')"
OUT=$(mktemp -d /tmp/meshlm_compare.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
declare -A SHAPE=(
  [tiny]="--n-layer 4 --n-head 4 --n-embd 256 --vocab-size 4096 --seq-len 256 --batch-size 8"
  [gpt2-124M]="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4"
  [llama-150M]="--n-layer 12 --n-head 12 --n-kv-head 4 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4"
)
CONFIGS=(${CONFIGS:-tiny gpt2-124M llama-150M})
# PyTorch 1.13 on a CPU without AVX512-BF16 runs bf16 products at ~4 GFLOP/s (minutes per
# gpt2-124M step): TORCH_BF16_STEPS=1 TORCH_BF16_WARMUP=1 keep its bf16 rows short.
run_one() {  # tool cfg precision round
  local tool=$1 cfg=$2 p=$3 r=$4 arch=() reference=bench/pytorch_gpt2.py env_blas=()
  [[ $cfg == llama* ]] && arch=(--arch llama) reference=bench/pytorch_llama.py
  local out="$OUT/${tool}_${cfg}_${p}_$r.json"
  case $tool in
    meshlm)
      OMP_NUM_THREADS=2 "$BUILD/meshlm" bench "${arch[@]}" ${SHAPE[$cfg]} --max-seq-len 256 --precision "$p" \
        --warmup 2 --timed-steps "$STEPS" --json > "$out" ;;
    torch2)
      OMP_NUM_THREADS=2 "$VENV/bin/python" "$reference" ${SHAPE[$cfg]} --precision "$p" --warmup 2 \
        --timed-steps "$STEPS" --threads 2 > "$out" ;;
    torch2-compile)  # the first two steps compile forward and backward
      OMP_NUM_THREADS=2 "$VENV/bin/python" "$reference" ${SHAPE[$cfg]} --precision "$p" --warmup 3 \
        --timed-steps "$STEPS" --threads 2 --compile > "$out" ;;
    torch1.13)
      [ "$p" = fp32 ] && grep -qw avx512_bf16 /proc/cpuinfo && env_blas=(OPENBLAS_CORETYPE=Cooperlake)
      local w=2 s=$STEPS
      [ "$p" = bf16 ] && w=${TORCH_BF16_WARMUP:-2} s=${TORCH_BF16_STEPS:-$STEPS}
      env "${env_blas[@]}" OMP_NUM_THREADS=2 /usr/bin/python3 "$reference" ${SHAPE[$cfg]} --precision "$p" \
        --warmup "$w" --timed-steps "$s" --threads 2 > "$out" ;;
  esac
}
for round in $(seq 1 "$ROUNDS"); do
  for cfg in "${CONFIGS[@]}"; do
    for p in fp32 bf16; do
      for tool in "${TOOLS[@]}"; do
        [ -n "$tool" ] && run_one "$tool" "$cfg" "$p" "$round"
      done
      echo "round $round $cfg $p done" >&2
    done
  done
done
/usr/bin/python3 - "$OUT" "$ROUNDS" "${TOOLS[*]}" "${CONFIGS[@]}" <<'PY'
import json, statistics, sys
out, rounds, tools, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
def med(tool, cfg, p, key):
    return statistics.median(json.load(open(f"{out}/{tool}_{cfg}_{p}_{r}.json"))[key] for r in range(1, rounds + 1))
peers = [t for t in tools if t != "meshlm"]
head = "| config | precision | meshlm tokens/s | " + " | ".join(f"{t} tokens/s" for t in peers) + " | " + \
       " | ".join(f"vs {t}" for t in peers) + " | meshlm MFU | meshlm RSS MiB | " + \
       " | ".join(f"{t} RSS MiB" for t in peers) + " |"
print(head)
print("|" + " --- |" * 2 + " ---: |" * (head.count("|") - 3))
for cfg in configs:
    for p in ("fp32", "bf16"):
        m = med("meshlm", cfg, p, "tokens_per_s")
        ts = [med(t, cfg, p, "tokens_per_s") for t in peers]
        print(f"| {cfg} | {p} | {m:.0f} | " + " | ".join(f"{t:.0f}" for t in ts) + " | " +
              " | ".join(f"{m / t:.2f}x" for t in ts) + f" | {100 * med('meshlm', cfg, p, 'mfu'):.0f}% "
              f"| {med('meshlm', cfg, p, 'peak_rss_mib'):.0f} | " +
              " | ".join(f"{med(t, cfg, p, 'peak_rss_mib'):.0f}" for t in peers) + " |")
PY
