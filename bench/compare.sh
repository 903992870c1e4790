#!/usr/bin/env bash
# meshlm against PyTorch on this CPU, side by side: for each config (tiny: L4 H4 C256 V4096
# T256 B8; gpt2-124M: L12 H12 C768 V50257 T256 B4; llama-150M: configs/llama_150m.toml's shape,
# L12 H12 KV4 C768 SwiGLU 2048 V50257 T256 B4) and precision (fp32, bf16), `meshlm bench` and
# bench/pytorch_gpt2.py (bench/pytorch_llama.py for the Llama) run alternately, ROUNDS times, 2 threads each; the medians of the
# rounds and the ratios are printed as a table. PyTorch gets its best settings here: fp32 with
# OPENBLAS_CORETYPE=Cooperlake on AVX512-BF16 CPUs (Debian's OpenBLAS otherwise may pick a
# generic kernel on a Zen 4), bf16 through torch.autocast (oneDNN). Installs Debian's python3-torch if missing (not a
# dependency of meshlm). Usage: bench/compare.sh [build-dir] [rounds] [timed-steps]
set -euo pipefail
BUILD="${1:-build}"
ROUNDS="${2:-2}"
STEPS="${3:-6}"
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import torch" 2>/dev/null || ! dpkg -s libopenblas0-openmp >/dev/null 2>&1; then
  # Without an optimized BLAS Debian's torch runs on the reference netlib BLAS (~2.6 GFLOP/s
  # here, 40x slower): OpenBLAS comes with it.
  echo "installing python3-torch and libopenblas0-openmp (for this comparison only)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-openmp >/dev/null
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); features: $(grep -m1 -ow -E 'avx2|avx512f|avx512_bf16|avx512_fp16|amx_bf16|amx_fp16' /proc/cpuinfo | sort -u | xargs)"
OUT=$(mktemp -d /tmp/meshlm_compare.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
declare -A SHAPE=(
  [tiny]="--n-layer 4 --n-head 4 --n-embd 256 --vocab-size 4096 --seq-len 256 --batch-size 8"
  [gpt2-124M]="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4"
  [llama-150M]="--n-layer 12 --n-head 12 --n-kv-head 4 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4"
)
CONFIGS=(${CONFIGS:-tiny gpt2-124M llama-150M})
# PyTorch's steps per precision: on a CPU without AVX512-BF16 its bf16 products run at ~4
# GFLOP/s (minutes per gpt2-124M step), so TORCH_BF16_STEPS=1 TORCH_BF16_WARMUP=1 keep it short.
declare -A twarm=([fp32]=2 [bf16]=${TORCH_BF16_WARMUP:-2}) tsteps=([fp32]=$STEPS [bf16]=${TORCH_BF16_STEPS:-$STEPS})
for round in $(seq 1 "$ROUNDS"); do
  for cfg in "${CONFIGS[@]}"; do
    arch=() reference=bench/pytorch_gpt2.py
    [[ $cfg == llama* ]] && arch=(--arch llama) reference=bench/pytorch_llama.py
    for p in fp32 bf16; do
      OMP_NUM_THREADS=2 "$BUILD/meshlm" bench "${arch[@]}" ${SHAPE[$cfg]} --max-seq-len 256 --precision "$p" \
        --warmup 2 --timed-steps "$STEPS" --json > "$OUT/meshlm_${cfg}_${p}_$round.json"
      env_blas=()
      [ "$p" = fp32 ] && grep -qw avx512_bf16 /proc/cpuinfo && env_blas=(OPENBLAS_CORETYPE=Cooperlake)
      env "${env_blas[@]}" OMP_NUM_THREADS=2 /usr/bin/python3 "$reference" ${SHAPE[$cfg]} \
        --precision "$p" --warmup "${twarm[$p]}" --timed-steps "${tsteps[$p]}" --threads 2 > "$OUT/torch_${cfg}_${p}_$round.json"
      echo "round $round $cfg $p done" >&2
    done
  done
done
/usr/bin/python3 - "$OUT" "$ROUNDS" "${CONFIGS[@]}" <<'PY'
import json, statistics, sys
out, rounds, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(tool, cfg, p, key):
    return statistics.median(json.load(open(f"{out}/{tool}_{cfg}_{p}_{r}.json"))[key] for r in range(1, rounds + 1))
print(f"| config | precision | meshlm tokens/s | PyTorch tokens/s | ratio | meshlm MFU | meshlm RSS MiB | PyTorch RSS MiB |")
print(f"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for cfg in configs:
    for p in ("fp32", "bf16"):
        m, t = med("meshlm", cfg, p, "tokens_per_s"), med("torch", cfg, p, "tokens_per_s")
        print(f"| {cfg} | {p} | {m:.0f} | {t:.0f} | {m / t:.2f}x | {100 * med('meshlm', cfg, p, 'mfu'):.0f}% "
              f"| {med('meshlm', cfg, p, 'peak_rss_mib'):.0f} | {med('torch', cfg, p, 'peak_rss_mib'):.0f} |")
PY
