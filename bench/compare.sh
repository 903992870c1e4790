#!/usr/bin/env bash
# meshlm against PyTorch on this CPU, side by side: for each config (tiny: L4 H4 C256 V4096
# T256 B8; gpt2-124M: L12 H12 C768 V50257 T256 B4) and precision (fp32, bf16), `meshlm bench`
# and bench/pytorch_gpt2.py run alternately, ROUNDS times, 2 threads each; the medians of the
# rounds and the ratios are printed as a table. PyTorch gets its best settings here: fp32 with
# OPENBLAS_CORETYPE=Cooperlake (Debian's OpenBLAS otherwise may pick a generic kernel on this
# CPU), bf16 through torch.autocast (oneDNN). Installs Debian's python3-torch if missing (not a
# dependency of meshlm). Usage: bench/compare.sh [build-dir] [rounds] [timed-steps]
set -euo pipefail
BUILD="${1:-build}"
ROUNDS="${2:-2}"
STEPS="${3:-6}"
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "installing python3-torch (for this comparison only)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch >/dev/null
fi
OUT=$(mktemp -d /tmp/meshlm_compare.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
declare -A SHAPE=(
  [tiny]="--n-layer 4 --n-head 4 --n-embd 256 --vocab-size 4096 --seq-len 256 --batch-size 8"
  [gpt2-124M]="--n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --seq-len 256 --batch-size 4"
)
for round in $(seq 1 "$ROUNDS"); do
  for cfg in tiny gpt2-124M; do
    for p in fp32 bf16; do
      OMP_NUM_THREADS=2 "$BUILD/meshlm" bench ${SHAPE[$cfg]} --max-seq-len 256 --precision "$p" \
        --warmup 2 --timed-steps "$STEPS" --json > "$OUT/meshlm_${cfg}_${p}_$round.json"
      env_blas=()
      [ "$p" = fp32 ] && env_blas=(OPENBLAS_CORETYPE=Cooperlake)
      env "${env_blas[@]}" OMP_NUM_THREADS=2 /usr/bin/python3 bench/pytorch_gpt2.py ${SHAPE[$cfg]} \
        --precision "$p" --warmup 2 --timed-steps "$STEPS" --threads 2 > "$OUT/torch_${cfg}_${p}_$round.json"
      echo "round $round $cfg $p done" >&2
    done
  done
done
/usr/bin/python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def med(tool, cfg, p, key):
    return statistics.median(json.load(open(f"{out}/{tool}_{cfg}_{p}_{r}.json"))[key] for r in range(1, rounds + 1))
print(f"| config | precision | meshlm tokens/s | PyTorch tokens/s | ratio | meshlm MFU | meshlm RSS MiB | PyTorch RSS MiB |")
print(f"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for cfg in ("tiny", "gpt2-124M"):
    for p in ("fp32", "bf16"):
        m, t = med("meshlm", cfg, p, "tokens_per_s"), med("torch", cfg, p, "tokens_per_s")
        print(f"| {cfg} | {p} | {m:.0f} | {t:.0f} | {m / t:.2f}x | {100 * med('meshlm', cfg, p, 'mfu'):.0f}% "
              f"| {med('meshlm', cfg, p, 'peak_rss_mib'):.0f} | {med('torch', cfg, p, 'peak_rss_mib'):.0f} |")
PY
