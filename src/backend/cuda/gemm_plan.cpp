#include "backend/cuda/gemm_plan.h"

#include <functional>

#include "core/error.h"

namespace meshlm::cuda {

LtPlan make_lt_plan(const GemmCall& g) {
  MESHLM_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0, "cuda gemm: negative size");
  // meshlm's op(B) is (K, N): stored (K, N) row-major = (N, K) column-major, or transposed.
  const DType bdt = g.b_dtype.value_or(g.ab);
  const LtLayout a = g.trans_b ? LtLayout{bdt, g.K, g.N, g.ldb} : LtLayout{bdt, g.N, g.K, g.ldb};
  const LtLayout b = g.trans_a ? LtLayout{g.ab, g.M, g.K, g.lda} : LtLayout{g.ab, g.K, g.M, g.lda};
  const LtLayout c{g.c, g.N, g.M, g.ldc};
  MESHLM_CHECK(a.ld >= a.rows && b.ld >= b.rows && c.ld >= c.rows,
               "cuda gemm: a leading dimension below its row length");
  return {g.trans_b, g.trans_a, g.N, g.M, g.K, a, b, c, true, g.bias, g.bias_dtype, g.alpha, g.beta};
}

GemmCall matmul_forward_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in, bool bias) {
  return {dt, dt, false, w_out_in, N, OC, C, C, w_out_in ? C : OC, OC, 1.0f, 0.0f, bias, dt};
}
GemmCall matmul_dinp_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in) {
  return {dt, dt, false, !w_out_in, N, C, OC, OC, w_out_in ? C : OC, C, 1.0f, 1.0f, false, dt};
}
GemmCall matmul_dweight_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in) {
  if (!w_out_in) return {dt, DType::fp32, true, false, C, OC, N, C, OC, OC, 1.0f, 1.0f, false, dt};
  return {dt, DType::fp32, true, false, OC, C, N, OC, C, C, 1.0f, 1.0f, false, dt};
}

GemmCall gemm_fp8_call(DType fa, DType fb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, float alpha,
                       float beta, DType c, int64_t ldc, bool bias) {
  MESHLM_CHECK(fa == DType::fp8_e4m3 || fa == DType::fp8_e5m2, "gemm_fp8: A is not fp8");
  MESHLM_CHECK(fb == DType::fp8_e4m3 || fb == DType::fp8_e5m2, "gemm_fp8: B is not fp8");
  MESHLM_CHECK(!(fa == DType::fp8_e5m2 && fb == DType::fp8_e5m2), "gemm_fp8: A and B both e5m2");
  MESHLM_CHECK(c == DType::fp32 || c == DType::bf16, "gemm_fp8: C is fp32 or bf16");
  MESHLM_CHECK(lda >= K && ldb >= K && ldc >= N, "gemm_fp8: a leading dimension below its row length");
  return {fa, c, false, true, M, N, K, lda, ldb, ldc, alpha, beta, bias, c, fb};
}

bool fp8_gemm_native(const GemmCall& g, int cc_major, int cc_minor, const void* A, const void* B) {
  const bool fp8 = g.ab == DType::fp8_e4m3 || g.ab == DType::fp8_e5m2;
  if (!fp8 || cc_major * 10 + cc_minor < 89 || g.trans_a || !g.trans_b) return false;
  if (g.bias && g.c == DType::fp32) return false;  // cuBLASLt's fp8 kernels take a bf16 bias with fp32 out
  for (int64_t v : {g.M, g.N, g.K, g.lda, g.ldb, g.ldc})
    if (v % 16 != 0) return false;
  return alignment_of(A) == 16 && alignment_of(B) == 16;
}

int alignment_of(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  for (int a : {16, 8, 4, 2})
    if (u % uintptr_t(a) == 0) return a;
  return 1;
}

AlgoKey algo_key(const LtPlan& p, const void* A, const void* B, const void* C) {
  return {p.trans_a, p.trans_b, p.m, p.n, p.k, p.a.ld, p.b.ld, p.c.ld, p.a.dt, p.b.dt, p.c.dt,
          p.bias ? p.bias_dtype : DType::fp32, p.bias, p.beta == 0.0f, alignment_of(A), alignment_of(B),
          alignment_of(C)};
}

size_t AlgoKeyHash::operator()(const AlgoKey& k) const {
  size_t h = 0;
  auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int64_t v : {k.m, k.n, k.k, k.lda, k.ldb, k.ldc}) mix(uint64_t(v));
  mix(uint64_t(k.trans_a) | uint64_t(k.trans_b) << 1 | uint64_t(k.bias) << 2 | uint64_t(k.beta_zero) << 3);
  mix(uint64_t(k.a) | uint64_t(k.b) << 8 | uint64_t(k.c) << 16 | uint64_t(k.bias_dtype) << 24);
  mix(uint64_t(k.align_a) | uint64_t(k.align_b) << 8 | uint64_t(k.align_c) << 16);
  return h;
}

std::string describe(const AlgoKey& k) {
  return std::string(k.trans_a ? "T" : "N") + (k.trans_b ? "T" : "N") + " m=" + std::to_string(k.m) +
         " n=" + std::to_string(k.n) + " k=" + std::to_string(k.k) + " " + dtype_name(k.a) +
         (k.b != k.a ? std::string(" x ") + dtype_name(k.b) : std::string()) + "->" + dtype_name(k.c) +
         (k.bias ? " +bias" : "") + (k.beta_zero ? "" : " beta");
}

void run_plan_on_host(const LtPlan& p, const float* A, const float* B, float* C, const float* bias) {
  // op(A) (m, k): element (i, l) of A stored column-major rows x cols with ld.
  auto a_at = [&](int64_t i, int64_t l) { return p.trans_a ? A[i * p.a.ld + l] : A[l * p.a.ld + i]; };
  auto b_at = [&](int64_t l, int64_t j) { return p.trans_b ? B[l * p.b.ld + j] : B[j * p.b.ld + l]; };
  for (int64_t j = 0; j < p.n; j++)
    for (int64_t i = 0; i < p.m; i++) {
      double acc = 0;
      for (int64_t l = 0; l < p.k; l++) acc += double(a_at(i, l)) * double(b_at(l, j));
      float& c = C[j * p.c.ld + i];
      double d = double(p.alpha) * acc + (p.beta == 0.0f ? 0.0 : double(p.beta) * double(c));
      if (p.bias) d += double(bias[i]);
      c = float(d);
    }
}

}  // namespace meshlm::cuda
