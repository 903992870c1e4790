// Causal self-attention on CPU through small GEMMs, one (batch, head) pair at a time.
// Forward: S = Q K^T (T x T, in a per-thread scratch), scale, causal mask, row softmax, O = P V;
// only each row's log-sum-exp is saved. Backward recomputes P from Q, K and the log-sum-exp,
// then dP = dO V^T, dS = P * (dP - D) (D = rowsum(dO * O)), dQ += dS K, dK += dS^T Q,
// dV += P^T dO. The T x T scratch lives only while one (batch, head) pair is processed; no
// T x T matrix is kept between calls. Q, K, V and their gradients are read and written in place
// in their buffers (GPT-2's one qkv buffer, Llama's three) through leading dimensions, without copies. Work is split over the
// (batch, head) pairs forward and (batch, key/value head) pairs backward; the GEMMs inside a
// parallel region run on the calling thread. Rows go in
// blocks of 64 that skip the keys past their last row (causal blocking, below).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

namespace {
// Causal blocking: the rows of a head are taken kRows at a time, and a block of rows
// [r0, r1) only ever looks at the keys [0, r1): the upper-right blocks of the T x T products,
// which the mask would zero, are never computed (at T = 256, 10 of 16 blocks are).
constexpr int64_t kRows = 64;
}  // namespace

void attention_head_forward(float* o, int64_t ldo, float* lse, const float* q, const float* k,
                            const float* v, int64_t ldq, int64_t ldkv, int64_t T, int64_t HS, float* S) {
  const float scale = 1.0f / std::sqrt(float(HS));
  for (int64_t r0 = 0; r0 < T; r0 += kRows) {
    const int64_t r1 = std::min(T, r0 + kRows), m = r1 - r0;
    float* Sb = S + r0 * T;  // rows [r0, r1), columns [0, r1) used, ld T
    onednn_sgemm(false, true, m, r1, HS, scale, q + r0 * ldq, ldq, k, ldkv, 0.0f, Sb, T);  // scale Q K^T
    for (int64_t t = r0; t < r1; t++) {
      lse[t] = causal_softmax_row(S + t * T, t, r1);
    }
    onednn_sgemm(false, false, m, HS, r1, 1.0f, Sb, T, v, ldkv, 0.0f, o + r0 * ldo, ldo);  // O = P V
  }
}

void attention_head_backward(float* dq, float* dk, float* dv, int64_t lddq, int64_t lddkv, const float* go,
                             const float* o, int64_t ldo, const float* q, const float* k,
                             const float* v, int64_t ldq, int64_t ldkv, const float* lse, int64_t T,
                             int64_t HS, float* P, float* dP) {
  const float scale = 1.0f / std::sqrt(float(HS));
  for (int64_t r0 = 0; r0 < T; r0 += kRows) {
    const int64_t r1 = std::min(T, r0 + kRows), m = r1 - r0;
    float* Pb = P + r0 * T;  // rows [r0, r1), columns [0, r1), ld T
    float* dPb = dP + r0 * T;
    const float* gob = go + r0 * ldo;
    onednn_sgemm(false, true, m, r1, HS, scale, q + r0 * ldq, ldq, k, ldkv, 0.0f, Pb, T);  // scores
    onednn_sgemm(false, true, m, r1, HS, 1.0f, gob, ldo, v, ldkv, 0.0f, dPb, T);           // dO V^T
    for (int64_t t = r0; t < r1; t++) {
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
      for (int64_t j = t + 1; j < r1; j++) p[j] = d[j] = 0.0f;
    }
    onednn_sgemm(false, false, m, HS, r1, 1.0f, dPb, T, k, ldkv, 1.0f, dq + r0 * lddq, lddq);  // dQ += dS K
    onednn_sgemm(true, false, r1, HS, m, 1.0f, dPb, T, q + r0 * ldq, ldq, 1.0f, dk, lddkv);   // dK += dS^T Q
    onednn_sgemm(true, false, r1, HS, m, 1.0f, Pb, T, gob, ldo, 1.0f, dv, lddkv);            // dV += P^T dO
  }
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionShape& a, float* scratch) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.NH; h++) {
      float* S = scratch + int64_t(omp_get_thread_num()) * 2 * T * T;  // (T, T)
      const int64_t kv = b * T * a.ldkv + (h / a.group()) * HS;          // (T, HS) of k and v, ld ldkv
      attention_head_forward(out + b * T * C + h * HS, C, lse + (b * a.NH + h) * T, q + b * T * a.ldq + h * HS,
                             k + kv, v + kv, a.ldq, a.ldkv, T, HS, S);
    }
}

void attention_decode(float* out, const float* q, const float* k, const float* v, const AttentionShape& a,
                      int64_t len) {
  const int64_t HS = a.HS;
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for schedule(static) if (len * a.NH * HS > 32768)
  for (int64_t h = 0; h < a.NH; h++) {
    const int64_t kvh = h / a.group();
    std::vector<float> p(static_cast<size_t>(len));
    float mx = -INFINITY;
    for (int64_t j = 0; j < len; j++) {
      const float* kj = k + j * a.ldkv + kvh * HS;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < HS; i++) s += q[h * HS + i] * kj[i];
      p[size_t(j)] = s * scale;
      mx = std::max(mx, p[size_t(j)]);
    }
    float sum = 0;
    float* pp = p.data();
#pragma omp simd reduction(+ : sum)  // libmvec's vector expf (core/vecmath.h)
    for (int64_t j = 0; j < len; j++) {
      pp[j] = std::exp(pp[j] - mx);
      sum += pp[j];
    }
    float* o = out + h * HS;
    for (int64_t i = 0; i < HS; i++) o[i] = 0;
    for (int64_t j = 0; j < len; j++) {
      const float pj = p[size_t(j)] / sum;
      const float* vj = v + j * a.ldkv + kvh * HS;
#pragma omp simd
      for (int64_t i = 0; i < HS; i++) o[i] += pj * vj[i];
    }
  }
}

// Over (batch, kv head) pairs: the query heads of a group add into the same dk, dv one after
// another, in head order, so the sum does not depend on the thread count.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttentionShape& a,
                        float* scratch) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t kvh = 0; kvh < a.NKV; kvh++) {
      float* P = scratch + int64_t(omp_get_thread_num()) * 2 * T * T;  // (T, T) twice
      const int64_t kv = b * T * a.ldkv + kvh * HS;
      for (int64_t h = kvh * a.group(); h < (kvh + 1) * a.group(); h++) {
        const int64_t qo = b * T * a.ldq + h * HS, at = b * T * C + h * HS;  // (T, HS) blocks
        attention_head_backward(dq + qo, dk + kv, dv + kv, a.ldq, a.ldkv, dout + at, out + at, C, q + qo, k + kv,
                                v + kv, a.ldq, a.ldkv, lse + (b * a.NH + h) * T, T, HS, P, P + T * T);
      }
    }
}

}  // namespace meshlm::cpu
