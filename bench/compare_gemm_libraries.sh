#!/usr/bin/env bash
# Measures the GEMM candidates side by side on 2 threads: oneDNN (matmul primitive fp32 and
# bf16, and its sgemm) through build/bench_gemm, then OpenBLAS sgemm with its default kernel
# choice and with OPENBLAS_CORETYPE forced (for CPUs it does not recognise). Installs
# libopenblas-dev for this comparison only; meshlm itself does not use OpenBLAS.
# Usage: bench/compare_gemm_libraries.sh [build-dir]
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
if ! dpkg-query -W -f='${Status}' libopenblas-dev 2>/dev/null | grep -q "install ok installed"; then
  apt-get install -y -qq --no-install-recommends libopenblas-dev >/dev/null
fi
g++ -O2 -std=c++20 bench/bench_gemm_openblas.cpp -o "$BUILD/bench_gemm_openblas" \
  -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -lbenchmark -lpthread
args=(--benchmark_min_time=0.5 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true)
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
echo "== oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev) =="
"$BUILD/bench_gemm" "${args[@]}" | grep median
echo "== OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas-dev), default core detection =="
env -u OPENBLAS_CORETYPE "$BUILD/bench_gemm_openblas" "${args[@]}" | grep median
for core in SkylakeX Cooperlake Zen Haswell; do
  echo "== OpenBLAS, OPENBLAS_CORETYPE=$core =="
  OPENBLAS_CORETYPE=$core "$BUILD/bench_gemm_openblas" "${args[@]}" | grep median
done
