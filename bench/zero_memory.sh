#!/usr/bin/env bash
# ZeRO stages side by side (BENCHMARKS.md), on the ~150M Llama (configs/llama_150m.toml) in bf16,
# seq 64, global batch 4, every rank 1 OpenMP thread:
#   1. memory: each rank's peak resident memory (/usr/bin/time) at ZeRO-0/1/2/3 on dp 2 and
#      ZeRO-1/2/3 on dp 4 (ZeRO-0 at dp 2 only: 4 whole copies would crowd 24 GiB), next to the
#      bytes/parameter each rank holds and the formula (the start-up memory line);
#   2. accumulation under ZeRO-2 at dp 2 with 2 micro-batches: reduce-scatter every micro-batch
#      against whole gradients held (memory, step time, bytes moved);
#   3. speed: ZeRO-3 against ZeRO-1 at dp 2, alternated, with and without prefetch, with the
#      time spent waiting for gathers (gather_wait_ms) and all exposed communication;
#   4. saving: the ZeRO-3 dp 4 run's checkpoint written by 4 ranks (parts) against gathered (whole).
# Usage: bench/zero_memory.sh [build_dir] [steps]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
STEPS="${2:-4}"
cd "$ROOT"
source bench/mpi_lib.sh zero_memory
DATA=data/shakespeare_gpt2
[ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --tokenizer gpt2 --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
lscpu | grep -m1 "Model name" || true
common=(train --config configs/llama_150m.toml --data "$DATA" --seq-len 64 --batch-size 4 --precision bf16
        --eval-batches 0 --peak-gflops 100 --log-every 1 --plots 0)
# run NAME NP flags...: one run; per-rank peak RSS into $OUT/NAME.rss, the log into $OUT/NAME.log
run() {
  local name=$1 np=$2
  shift 2
  OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
    sh -c 'exec /usr/bin/time -f "rss_kib %M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$OUT/$name.rss" "$BUILD/meshlm" "${common[@]}" \
    --out "$OUT/$name" --steps "${RUN_STEPS:-$STEPS}" "$@" >"$OUT/$name.log" 2>&1 || { echo "$name failed:"; tail -3 "$OUT/$name.log"; return 1; }
}
# summary NAME: per-rank peak RSS (MiB), bytes/parameter held and the formula, the median step ms (steps after the first)
summary() {
  /usr/bin/python3 - "$OUT" "$1" <<'PY'
import glob, json, re, statistics, sys
out, name = sys.argv[1], sys.argv[2]
rss = [int(open(f).read().split()[-1]) / 1024 for f in sorted(glob.glob(f"{out}/{name}.rss.*"))]
log = open(f"{out}/{name}.log").read()
held = re.search(r"= ([0-9.]+) bytes/parameter held \(formula: ([^)]*)\)", log)
m = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"loss"' in l]
ms = statistics.median(d["ms_per_step"] for d in m[1:]) if len(m) > 1 else float("nan")
gw = statistics.median(d.get("gather_wait_ms", 0) for d in m[1:]) if len(m) > 1 else 0
cw = statistics.median(d.get("comm_wait_ms", 0) for d in m[1:]) if len(m) > 1 else 0
saved = re.search(r"saved .*\(end of run, ([0-9.]+) s\)", log)
print(f"| {name} | {' / '.join(f'{r:.0f}' for r in rss)} | {held.group(1) if held else '-'} | {held.group(2) if held else '-'} "
      f"| {ms:.0f} | {cw:.0f} | {gw:.0f} |" + (f" save {saved.group(1)} s |" if saved else ""))
PY
}
ck=(--checkpoints 0)
echo "| run | peak RSS per rank (MiB) | bytes/param held | formula | step ms | exposed comm ms | gather wait ms |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for z in 0 1 2 3; do run "dp2_zero$z" 2 --dp 2 --zero "$z" "${ck[@]}" && summary "dp2_zero$z"; done
for z in 1 2 3; do run "dp4_zero$z" 4 --dp 4 --zero "$z" "${ck[@]}" && summary "dp4_zero$z"; done
echo
echo "ZeRO-2, dp 2, 2 micro-batches of 1 sequence:"
for acc in micro whole; do run "dp2_zero2_accum_$acc" 2 --dp 2 --zero 2 --micro-batch-size 1 --zero-accumulate "$acc" "${ck[@]}" && summary "dp2_zero2_accum_$acc"; done
echo
echo "speed, dp 2, alternated:"
for round in 1 2; do
  run "dp2_zero1_r$round" 2 --dp 2 --zero 1 "${ck[@]}" && summary "dp2_zero1_r$round"
  run "dp2_zero3_r$round" 2 --dp 2 --zero 3 "${ck[@]}" && summary "dp2_zero3_r$round"
  run "dp2_zero3_noprefetch_r$round" 2 --dp 2 --zero 3 --overlap 0 "${ck[@]}" && summary "dp2_zero3_noprefetch_r$round"
done
echo
echo "saving the dp 4 ZeRO-3 run's checkpoint (152.7M parameters + Adam moments):"
for fmt in whole parts whole parts; do
  rm -rf "$OUT/save_$fmt"
  RUN_STEPS=1 run "save_$fmt" 4 --dp 4 --zero 3 --checkpoint-format "$fmt" && summary "save_$fmt"
done
echo
echo "capped: every rank's data segment limited to 2.5 GiB (ulimit -d; the unsharded bf16 state needs 18 bytes x 152.7M = 2.56 GiB, 2.66 with activations):"
for z in 0 3; do
  if (ulimit -d $((2560 * 1024)) && run "capped_zero$z" 2 --dp 2 --zero "$z" --checkpoints 0); then
    echo "ZeRO-$z trained: $(grep '^done' "$OUT/capped_zero$z.log")"; summary "capped_zero$z"
  else
    echo "ZeRO-$z refused: $(grep -m1 'error' "$OUT/capped_zero$z.log")"
  fi
done
