// The comparison point for the GEMM library choice: OpenBLAS sgemm on the same shapes as
// bench_gemm.cpp. Not part of the build (OpenBLAS is not a meshlm dependency); compiled and
// run by bench/compare_gemm_libraries.sh. OpenBLAS has no bf16 GEMM in Debian 12's 0.3.21.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <vector>

namespace {

void run(benchmark::State& state, bool ta, bool tb, int M, int N, int K) {
  std::vector<float> A(size_t(M) * K, 0.5f), B(size_t(K) * N, 0.25f), C(size_t(M) * N);
  for (auto _ : state)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK_CAPTURE(run, openblas_large_4096, false, false, 4096, 4096, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, openblas_fwd, false, false, 1024, 3072, 768)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, openblas_dinp, false, true, 1024, 768, 3072)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, openblas_dw, true, false, 768, 3072, 1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
