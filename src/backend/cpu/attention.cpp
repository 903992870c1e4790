// Causal self-attention on CPU through small GEMMs, one (batch, head) pair at a time.
// Forward: S = Q K^T (T x T, in a per-thread scratch), scale, causal mask, row softmax, O = P V;
// only each row's log-sum-exp is saved. Backward recomputes P from Q, K and the log-sum-exp,
// then dP = dO V^T, dS = P * (dP - D) (D = rowsum(dO * O)), dQ += dS K, dK += dS^T Q,
// dV += P^T dO. The T x T scratch lives only while one (batch, head) pair is processed; no
// T x T matrix is kept between calls. Q, K, V and their gradients are read and written in place
// inside qkv (B, T, 3C) through leading dimensions, without copies. Work is split over the
// (batch, head) pairs; the GEMMs inside a parallel region run on the calling thread. The
// upper triangle of each T x T product is computed and discarded (masked): simpler than
// blocking the causal structure, and the GEMM runs ~5x faster than row-wise dot products.
#include <omp.h>

#include <cmath>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

void attention_head_forward(float* o, int64_t ldo, float* lse, const float* q, const float* k,
                            const float* v, int64_t ldqkv, int64_t T, int64_t HS, float* S) {
  const float scale = 1.0f / std::sqrt(float(HS));
  onednn_sgemm(false, true, T, T, HS, scale, q, ldqkv, k, ldqkv, 0.0f, S, T);  // S = scale Q K^T
  for (int64_t t = 0; t < T; t++) {
    float* row = S + t * T;
    float mx = -INFINITY;
    for (int64_t j = 0; j <= t; j++) mx = std::max(mx, row[j]);
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j <= t; j++) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j <= t; j++) row[j] *= inv;
    for (int64_t j = t + 1; j < T; j++) row[j] = 0.0f;  // causal mask
    lse[t] = mx + std::log(sum);
  }
  onednn_sgemm(false, false, T, HS, T, 1.0f, S, T, v, ldqkv, 0.0f, o, ldo);  // O = P V
}

void attention_head_backward(float* dq, float* dk, float* dv, int64_t lddqkv, const float* go,
                             const float* o, int64_t ldo, const float* q, const float* k,
                             const float* v, int64_t ldqkv, const float* lse, int64_t T,
                             int64_t HS, float* P, float* dP) {
  const float scale = 1.0f / std::sqrt(float(HS));
  onednn_sgemm(false, true, T, T, HS, scale, q, ldqkv, k, ldqkv, 0.0f, P, T);  // scaled scores
  onednn_sgemm(false, true, T, T, HS, 1.0f, go, ldo, v, ldqkv, 0.0f, dP, T);   // dP = dO V^T
  for (int64_t t = 0; t < T; t++) {
    float* p = P + t * T;
    float* d = dP + t * T;
    const float l = lse[t];
    float D = 0;  // sum_j p_j dp_j = dout . out
#pragma omp simd reduction(+ : D)
    for (int64_t i = 0; i < HS; i++) D += go[t * ldo + i] * o[t * ldo + i];
#pragma omp simd
    for (int64_t j = 0; j <= t; j++) {
      p[j] = std::exp(p[j] - l);
      d[j] = p[j] * (d[j] - D) * scale;  // dS, scaled back to the raw scores' gradient
    }
    for (int64_t j = t + 1; j < T; j++) p[j] = d[j] = 0.0f;
  }
  onednn_sgemm(false, false, T, HS, T, 1.0f, dP, T, k, ldqkv, 1.0f, dq, lddqkv);  // dQ += dS K
  onednn_sgemm(true, false, T, HS, T, 1.0f, dP, T, q, ldqkv, 1.0f, dk, lddqkv);   // dK += dS^T Q
  onednn_sgemm(true, false, T, HS, T, 1.0f, P, T, go, ldo, 1.0f, dv, lddqkv);     // dV += P^T dO
}

void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t NH, float* scratch) {
  const int64_t HS = C / NH, C3 = 3 * C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      float* S = scratch + int64_t(omp_get_thread_num()) * 2 * T * T;  // (T, T)
      const float* q = qkv + b * T * C3 + h * HS;                      // (T, HS), ld 3C
      attention_head_forward(out + b * T * C + h * HS, C, lse + (b * NH + h) * T, q, q + C,
                             q + 2 * C, C3, T, HS, S);
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int64_t B, int64_t T, int64_t C, int64_t NH,
                        float* scratch) {
  const int64_t HS = C / NH, C3 = 3 * C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      float* P = scratch + int64_t(omp_get_thread_num()) * 2 * T * T;  // (T, T) twice
      const float* q = qkv + b * T * C3 + h * HS;                      // (T, HS), ld 3C
      float* dq = dqkv + b * T * C3 + h * HS;
      const int64_t at = b * T * C + h * HS;  // (T, HS) blocks of out and dout, ld C
      attention_head_backward(dq, dq + C, dq + 2 * C, C3, dout + at, out + at, C, q, q + C,
                              q + 2 * C, C3, lse + (b * NH + h) * T, T, HS, P, P + T * T);
    }
}

}  // namespace meshlm::cpu
