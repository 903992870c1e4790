// GEMM microbenchmark: oneDNN matmul primitive (fp32, bf16), oneDNN sgemm, and the route the
// cpu backend picks, on GPT-2 shapes.
// Reports GFLOP/s as a counter. Run: build/bench_gemm --benchmark_counters_tabular=true
// Shapes: the large square reference, and the three products of a GPT-2 MLP linear with
// N = B*T = 1024 tokens, C = 768, OC = 3072: forward (N,C)x(C,OC), dinp (N,OC)x(OC,C)^T,
// dweight (C,N)x(N,OC) with the (N, C) input read transposed.
#include <benchmark/benchmark.h>

#include <vector>

#include "backend/cpu/gemm_onednn.h"
#include "core/dtype.h"

using namespace meshlm;

namespace {

struct Case { bool ta, tb; int64_t M, N, K; };

void run_matmul(benchmark::State& state, DType dt, Case c, GemmRoute route) {
  int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
  size_t esz = dtype_size(dt);
  std::vector<char> A(c.M * c.K * esz), B(c.K * c.N * esz);
  std::vector<float> C(c.M * c.N);
  std::vector<float> a32(c.M * c.K, 0.5f), b32(c.K * c.N, 0.25f);
  convert_from_f32(dt, A.data(), a32.data(), a32.size());
  convert_from_f32(dt, B.data(), b32.data(), b32.size());
  OneDnnGemm gemm;
  GemmDesc d{dt, c.ta, c.tb, c.M, c.N, c.K, lda, ldb, c.N, 1.0f, 0.0f, false, route};
  gemm.run(d, A.data(), B.data(), C.data());
  for (auto _ : state) gemm.run(d, A.data(), B.data(), C.data());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * c.M * c.N * c.K,
      benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void run_sgemm(benchmark::State& state, Case c) {
  int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
  std::vector<float> A(c.M * c.K, 0.5f), B(c.K * c.N, 0.25f), C(c.M * c.N);
  for (auto _ : state)
    onednn_sgemm(c.ta, c.tb, c.M, c.N, c.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), c.N);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * c.M * c.N * c.K,
      benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

const Case kLarge{false, false, 4096, 4096, 4096};
const Case kFwd{false, false, 1024, 3072, 768};   // out = inp @ W
const Case kDinp{false, true, 1024, 768, 3072};   // dinp = dout @ W^T
const Case kDw{true, false, 768, 3072, 1024};     // dW = inp^T @ dout

}  // namespace

#define MATMUL(name, dt, c) \
  BENCHMARK_CAPTURE(run_matmul, name, dt, c, GemmRoute::primitive)->Unit(benchmark::kMillisecond)->UseRealTime()
#define AUTO(name, c) \
  BENCHMARK_CAPTURE(run_matmul, name, DType::fp32, c, GemmRoute::automatic)->Unit(benchmark::kMillisecond)->UseRealTime()
MATMUL(f32_large_4096, DType::fp32, kLarge);
MATMUL(f32_fwd_1024x768x3072, DType::fp32, kFwd);
MATMUL(f32_dinp_1024x3072x768, DType::fp32, kDinp);
MATMUL(f32_dw_768x1024x3072, DType::fp32, kDw);
MATMUL(bf16_large_4096, DType::bf16, kLarge);
MATMUL(bf16_fwd_1024x768x3072, DType::bf16, kFwd);
MATMUL(bf16_dinp_1024x3072x768, DType::bf16, kDinp);
MATMUL(bf16_dw_768x1024x3072, DType::bf16, kDw);
BENCHMARK_CAPTURE(run_sgemm, sgemm_large_4096, kLarge)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run_sgemm, sgemm_fwd, kFwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run_sgemm, sgemm_dinp, kDinp)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run_sgemm, sgemm_dw, kDw)->Unit(benchmark::kMillisecond)->UseRealTime();

// What the cpu backend runs for fp32 (route chosen by the rule in gemm_onednn.h).
AUTO(f32_auto_fwd, kFwd);
AUTO(f32_auto_dinp, kDinp);
AUTO(f32_auto_dw, kDw);

BENCHMARK_MAIN();
