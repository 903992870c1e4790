// The GEMMs of the cuda backend as cuBLASLt sees them, built by plain host code the CPU tests
// check (tests/backend/test_cuda_host.cpp executes a plan with a column-major loop and compares
// it with the reference backend's row-major gemm).
//
// meshlm's products are row-major: C (M, N) = alpha op(A) op(B) + beta C. cuBLASLt is column-
// major, and a row-major (M, N) matrix is the column-major (N, M) matrix of its transpose, so
// the plan computes C^T = op(B)^T op(A)^T: cuBLASLt's A is meshlm's B and its B is meshlm's A,
// m = N, n = M, each transposed exactly when meshlm's is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"

namespace meshlm::cuda {

// One row-major product as the backend asks for it.
struct GemmCall {
  DType ab = DType::fp32;  // operand dtype
  DType c = DType::fp32;   // C and D (fp32 accumulation for every operand dtype)
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false;  // + bias (N) on every row of C (cuBLASLt's bias epilogue over its m)
  DType bias_dtype = DType::fp32;
  std::optional<DType> b_dtype = std::nullopt;  // B's dtype where it is not ab's (fp8: e5m2 with e4m3)
};

// A column-major matrix layout: rows x cols with leading dimension ld (>= rows).
struct LtLayout {
  DType dt;
  int64_t rows, cols, ld;
};

// The cuBLASLt call: D = alpha op(A) op(B) + beta C with C = D in place.
struct LtPlan {
  bool trans_a, trans_b;  // cuBLASLt's (CUBLAS_OP_T when true)
  int64_t m, n, k;
  LtLayout a, b, c;
  bool swap_operands;     // always true: cuBLASLt's A is meshlm's B
  bool bias;
  DType bias_dtype;
  float alpha, beta;
};

LtPlan make_lt_plan(const GemmCall& g);

// The products of matmul_forward and matmul_backward (ops.inc) as calls: out = inp @ W + bias
// (out in dt), dinp += dout @ W^T (dt), dW += the weight gradient in W's layout (fp32).
GemmCall matmul_forward_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in, bool bias);
GemmCall matmul_dinp_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in);
// Operands of the dW call: (inp, dout) for in_out, (dout, inp) for out_in.
GemmCall matmul_dweight_call(DType dt, int64_t N, int64_t C, int64_t OC, bool w_out_in);
// ops.inc's gemm_fp8: C (M, N) = alpha A (M, K) @ B (N, K)^T + beta C (+ bias), A and B fp8 codes
// with K contiguous. In cuBLASLt's terms that is "TN", the one layout its fp8 kernels take.
GemmCall gemm_fp8_call(DType fa, DType fb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, float alpha,
                       float beta, DType c, int64_t ldc, bool bias);
// Whether cuBLASLt's fp8 kernels take the call: compute capability 8.9 or later, the TN layout,
// not both operands e5m2, every size and leading dimension a multiple of 16, the operands
// 16-byte aligned, and no bias with fp32 out. Otherwise (or when cuBLASLt's heuristic offers no
// algorithm) the backend widens the codes to bf16 and multiplies those.
bool fp8_gemm_native(const GemmCall& g, int cc_major, int cc_minor, const void* A, const void* B);

// What the chosen algorithm depends on: the plan's shape, dtypes, epilogue, whether beta is 0,
// and the operands' alignment (16, 8, 4 or 2 bytes). Algorithms are chosen once per key and
// kept, so a shape always runs the same algorithm (reproducible results).
struct AlgoKey {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  DType a, b, c, bias_dtype;
  bool bias, beta_zero;
  int align_a, align_b, align_c;
  bool operator==(const AlgoKey&) const = default;
};
AlgoKey algo_key(const LtPlan& p, const void* A, const void* B, const void* C);
struct AlgoKeyHash {
  size_t operator()(const AlgoKey& k) const;
};
// The largest of 16, 8, 4, 2, 1 that divides the address.
int alignment_of(const void* p);
std::string describe(const AlgoKey& k);

// C = alpha op(A) op(B) + beta C (+ bias over rows) by the plan, column-major, in double: the
// meaning of a plan, for the tests. Operands are given as fp32 arrays.
void run_plan_on_host(const LtPlan& p, const float* A, const float* B, float* C, const float* bias);

}  // namespace meshlm::cuda
