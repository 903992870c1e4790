#!/usr/bin/env bash
# The layout planner on paper (BENCHMARKS.md, docs/parallel.md): the GPT runs of Narayanan et al.
# 2021 (Megatron-LM, Table 1: 1.7B-1T parameters on up to 3072 A100s) and Korthikanti et al.
# 2022 (the 22B-1T runs with sequence parallelism and selective recompute), predicted on the
# a100-80gb preset (fixed beforehand from datasheets and published GEMM / NCCL measurements,
# src/train/cluster.cpp), against the published throughput:
#   1. `meshlm plan --predict` of each published layout: predicted against published per-GPU
#      TFLOP/s (Narayanan: the paper's Eq. 3 FLOPs, recompute included) or iteration time
#      (Korthikanti: the model FLOPs utilisation the paper reports, at 312 TFLOP/s);
#   2. what one block keeps per micro-batch against Korthikanti's formula (34 s b h / t bytes
#      with sequence parallelism and selective recompute);
#   3. `meshlm plan` searching every layout of the row's GPUs: its first choice, and how much
#      faster than the published layout it predicts that choice to be, and why.
# Assumptions where the tables are silent: micro-batches of 1, the non-interleaved 1F1B schedule,
# 16-bit gradients all-reduced after backward (Megatron's default then), Narayanan's runs with
# full recompute (their Eq. 3 counts it), Korthikanti's with data parallelism 1.
# Usage: bench/plan_papers.sh [build-dir] [search: 1 (default) or 0]
set -euo pipefail
BUILD="${1:-build}"
SEARCH="${2:-1}"
cd "$(dirname "$0")/.."
/usr/bin/python3 - "$BUILD/meshlm" "$SEARCH" <<'PY'
import re, subprocess, sys, time
meshlm, search = sys.argv[1], sys.argv[2] == "1"
V, S, PEAK = 51200, 2048, 312e12
common = ["--machine", "a100-80gb", "--vocab-size", str(V), "--max-seq-len", str(S), "--seq-len", str(S),
          "--precision", "bf16", "--grad-reduce", "bf16"]
# (billions, heads, hidden, layers, t, p, GPUs, batch, published TFLOP/s per GPU)
narayanan = [(1.7, 24, 2304, 24, 1, 1, 32, 512, 137), (3.6, 32, 3072, 30, 2, 1, 64, 512, 138),
             (7.5, 32, 4096, 36, 4, 1, 128, 512, 142), (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135),
             (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138), (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140),
             (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148), (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155),
             (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163), (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163)]
# (name, heads, hidden, layers, t, p, GPUs, batch, published MFU)
korthikanti = [("22B", 64, 6144, 48, 8, 1, 8, 4, 0.415), ("175B", 96, 12288, 96, 8, 8, 64, 64, 0.514),
               ("530B", 128, 20480, 105, 8, 35, 280, 280, 0.560), ("1T", 160, 25600, 128, 8, 64, 512, 512, 0.563)]

def model(a, h, l, B):
    return ["--n-head", str(a), "--n-embd", str(h), "--n-layer", str(l), "--batch-size", str(B)]

def plan(args):
    r = subprocess.run([meshlm, "plan"] + common + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    return r.stdout

def predict(a, h, l, B, t, p, d, extra):
    out = plan(model(a, h, l, B) + ["--predict", "--dp", str(d), "--tp", str(t), "--pp", str(p),
                                    "--micro-batch-size", "1"] + extra)
    ms = float(re.search(r"predicted .*?: ([0-9.]+) ms per step", out).group(1))
    mib = float(re.search(r"ms per step, [0-9]+ tokens/s, ([0-9]+) MiB per rank", out).group(1))
    block = float(re.search(r"saved per block per micro-batch: ([0-9.]+) MiB", out).group(1))
    kinds = dict((k, float(v)) for k, v in re.findall(r" ([a-z. -]+) ([0-9.]+);", out.splitlines()[-1]))
    return ms / 1e3, mib, block, kinds, out

def best(a, h, l, B, n):
    t0 = time.time()
    out = plan(model(a, h, l, B) + ["--ranks", str(n), "--top", "1"])
    line = [x for x in out.splitlines() if x.startswith("1 ")][0]
    m = re.match(r"1\s+(.*?)\s+([0-9.]+)\s+[0-9]+\s+([0-9]+)\s+(.*)$", line)
    return m.group(1), float(m.group(2)) / 1e3, m.group(4), time.time() - t0

def why(kinds):
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:3]
    total = sum(kinds.values())
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in top)

print("## Narayanan et al. 2021, Table 1 (A100 80GB, full recompute, micro-batch 1, 1F1B)\n")
print("| params | t x p x d | batch | published TFLOP/s/GPU | predicted | error | predicted MiB/GPU | largest predicted costs |"
      + (" planner's choice (predicted) | vs published layout |" if search else ""))
print("|---|---|---|---|---|---|---|---|" + ("---|---|" if search else ""))
errs = []
for (b, a, h, l, t, p, n, B, tf) in narayanan:
    d = n // (t * p)
    F = 96 * B * S * l * h * h * (1 + S / (6 * h) + V / (16 * l * h))  # Eq. 3, recompute included
    sec, mib, _, kinds, _ = predict(a, h, l, B, t, p, d, ["--recompute", "full"])
    pred = F / sec / n / 1e12
    errs.append((pred - tf) / tf)
    row = f"| {b}B | {t} x {p} x {d} | {B} | {tf} | {pred:.0f} | {100 * errs[-1]:+.1f}% | {mib:.0f} | {why(kinds)} |"
    if search:
        lay, s2, dom, took = best(a, h, l, B, n)
        row += f" {lay} ({s2:.2f} s vs {sec:.2f} s) | {100 * (sec / s2 - 1):+.1f}% faster: {dom} |"
    print(row, flush=True)
print(f"\nmean absolute error {100 * sum(map(abs, errs)) / len(errs):.1f}%, max {100 * max(map(abs, errs)):.1f}%\n")

print("## Korthikanti et al. 2022 (A100 80GB, sequence parallel + selective recompute, dp 1, micro-batch 1, 1F1B)\n")
print("| model | t x p | batch | published s/iteration (MFU) | predicted s | error | saved per block: Korthikanti 34 sbh/t | planner | predicted MiB/GPU |"
      + (" planner's choice (predicted) | vs published layout |" if search else ""))
print("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if search else ""))
errs = []
for (name, a, h, l, t, p, n, B, mfu) in korthikanti:
    F = 72 * B * S * l * h * h * (1 + S / (6 * h) + V / (12 * l * h))  # model FLOPs, no recompute
    published = F / (n * PEAK * mfu)
    sec, mib, block, kinds, _ = predict(a, h, l, B, t, p, 1, ["--recompute", "selective", "--sequence-parallel", "1"])
    errs.append((sec - published) / published)
    formula = 34 * S * 1 * h / t / 2**20
    row = (f"| {name} | {t} x {p} | {B} | {published:.2f} ({100 * mfu:.1f}%) | {sec:.2f} | {100 * errs[-1]:+.1f}% | "
           f"{formula:.0f} MiB | {block:.0f} MiB | {mib:.0f} |")
    if search:
        lay, s2, dom, took = best(a, h, l, B, n)
        row += f" {lay} ({s2:.2f} s) | {100 * (sec / s2 - 1):+.1f}% faster: {dom} |"
    print(row, flush=True)
print(f"\nmean absolute error {100 * sum(map(abs, errs)) / len(errs):.1f}%, max {100 * max(map(abs, errs)):.1f}%")
PY
