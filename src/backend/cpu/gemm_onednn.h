// GEMM through oneDNN. Two routes: the matmul primitive (fp32 and bf16 operands; creating one
// JIT-compiles a kernel, so primitives are cached by their full description in the OneDnnGemm
// object, never in the process) and oneDNN's BLAS-style sgemm (fp32 only, no setup cost).
// Route::automatic picks by a fixed rule measured in BENCHMARKS.md: for fp32, sgemm when B is
// not transposed (the forward and weight-gradient products, ~1.4x faster here), the primitive
// when it is (the input-gradient product, ~1.25x faster). The rule is static, so a run's
// arithmetic never depends on timing (resume stays bit-identical).
// C (M, N) = alpha * op(A) @ op(B) [+ bias (N)] + beta * C; A and B are f32 or bf16, C and the
// bias f32 (or bf16 with bf16 operands, through the primitive), accumulation always in f32.
// On a CPU without a bf16 kernel in oneDNN (AVX2 only), bf16 operands are converted to fp32 first.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "core/dtype.h"

namespace meshlm {

enum class GemmRoute { automatic, primitive, sgemm };

struct GemmDesc {
  DType ab_dtype = DType::fp32;
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  bool has_bias = false;
  GemmRoute route = GemmRoute::automatic;
  DType c_dtype = DType::fp32;  // bf16: the primitive rounds C (and beta * C + ...) once, at the end
  DType bias_dtype = DType::fp32;

  auto key() const {
    return std::make_tuple(int(ab_dtype), trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta,
                           has_bias, int(c_dtype), int(bias_dtype));
  }
};

class OneDnnGemm {
 public:
  OneDnnGemm();
  ~OneDnnGemm();
  void run(const GemmDesc& d, const void* A, const void* B, void* C, const void* bias = nullptr);
  size_t cached_primitives() const;
  // Whether oneDNN has a bf16 matmul on this CPU; without one, bf16 products run on fp32 copies
  // of the operands (the same products and fp32 sums, slower).
  bool native_bf16() const;

 private:
  void run_emulated(const GemmDesc& d, const void* A, const void* B, void* C, const void* bias);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// oneDNN's plain BLAS-like sgemm (no primitive cache), kept for the benchmark comparison.
void onednn_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc);

}  // namespace meshlm
