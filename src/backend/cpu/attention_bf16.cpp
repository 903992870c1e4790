// Causal self-attention on bf16 buffers with bf16 products: the per-head GEMMs run on the bf16
// q, k, v, out and dout in place (through their leading dimensions, no fp32 copies), in oneDNN's
// bf16 matmul (AVX512-BF16 or AMX) with fp32 accumulation. The scores, the softmax and the
// score gradients are fp32; the probabilities P and the score gradients dS are rounded to bf16
// once, as the operands of their products (P V, dS K, dS^T Q, P^T dO), which is what flash
// attention does on GPUs. Outputs are rounded once: O and dQ by the product that makes them
// (dQ's beta = 1 adds the existing gradient first), dK and dV after the whole query group, from
// fp32 sums. Blocking, work split and fixed orders are those of the fp32 kernel (attention.cpp),
// so results do not depend on the thread count; every thread has its own OneDnnGemm (primitives
// and stream), as the products run inside the parallel loop.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"
#include "core/lowp.h"

namespace meshlm::cpu::bf16attn {

namespace {
constexpr int64_t kRows = 64;  // rows per causal block, as attention.cpp
constexpr DType bf = DType::bf16;

// Per-thread scratch, in floats: S or P (T, T) fp32, dP (T, T) fp32, P16 and dS16 (T, T) bf16
// (half a float each), dK and dV (T, HS) fp32, two rows (HS) fp32.
int64_t per_thread(int64_t T, int64_t HS) { return 3 * T * T + 2 * T * HS + 2 * HS; }

// C (m, n) [+]= alpha op(A) op(B) on bf16 operands; C fp32 or bf16 (c16).
void product(OneDnnGemm& g, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const u16* A,
             int64_t lda, const u16* B, int64_t ldb, float beta, void* C, int64_t ldc, bool c16) {
  GemmDesc d{bf, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, false};
  d.c_dtype = c16 ? bf : DType::fp32;
  d.route = GemmRoute::primitive;
  g.run(d, A, B, C);
}
}  // namespace

int64_t scratch_floats(int64_t T, int64_t HS, int threads) { return int64_t(threads) * per_thread(T, HS); }

// One (batch, head): q (T, HS) ld ldq, k and v ld ldkv, out ld ldo (bf16); lse (T).
void head_forward(OneDnnGemm& g, u16* out, int64_t ldo, float* lse, const u16* q, const u16* k, const u16* v,
                  int64_t ldq, int64_t ldkv, int64_t T, int64_t HS, float* scratch) {
  const float scale = 1.0f / std::sqrt(float(HS));
  float* S = scratch;                              // (T, T) fp32
  u16* P16 = reinterpret_cast<u16*>(S + T * T);    // (T, T) bf16
  for (int64_t r0 = 0; r0 < T; r0 += kRows) {
    const int64_t r1 = std::min(T, r0 + kRows), m = r1 - r0;
    product(g, false, true, m, r1, HS, scale, q + r0 * ldq, ldq, k, ldkv, 0.0f, S + r0 * T, T, false);
    for (int64_t t = r0; t < r1; t++) {
      lse[t] = causal_softmax_row(S + t * T, t, r1);
      lowp::from_f32(bf, P16 + t * T, S + t * T, r1);
    }
    product(g, false, false, m, HS, r1, 1.0f, P16 + r0 * T, T, v, ldkv, 0.0f, out + r0 * ldo, ldo, true);
  }
}

// One query head against its kv head: dq (bf16, ld ldq) += ..., dkf, dvf (T, HS) fp32 += ...
void head_backward(OneDnnGemm& g, u16* dq, float* dkf, float* dvf, const u16* go, const u16* o, int64_t ldo,
                   const u16* q, const u16* k, const u16* v, int64_t ldq, int64_t ldkv, const float* lse, int64_t T,
                   int64_t HS, float* scratch) {
  const float scale = 1.0f / std::sqrt(float(HS));
  float* P = scratch;                               // (T, T) fp32
  float* dP = P + T * T;                            // (T, T) fp32
  u16* P16 = reinterpret_cast<u16*>(dP + T * T);    // (T, T) bf16
  u16* dS16 = P16 + T * T;                          // (T, T) bf16
  float* gor = dP + 2 * T * T + 2 * T * HS;         // (HS) one row of dout
  float* orow = gor + HS;                           // (HS) one row of out
  for (int64_t r0 = 0; r0 < T; r0 += kRows) {
    const int64_t r1 = std::min(T, r0 + kRows), m = r1 - r0;
    product(g, false, true, m, r1, HS, scale, q + r0 * ldq, ldq, k, ldkv, 0.0f, P + r0 * T, T, false);  // scores
    product(g, false, true, m, r1, HS, 1.0f, go + r0 * ldo, ldo, v, ldkv, 0.0f, dP + r0 * T, T, false);  // dO V^T
    for (int64_t t = r0; t < r1; t++) {
      float* p = P + t * T;
      float* d = dP + t * T;
      const float l = lse[t];
      lowp::to_f32(bf, gor, go + t * ldo, HS);
      lowp::to_f32(bf, orow, o + t * ldo, HS);
      float D = 0;  // sum_j p_j dp_j = dout . out
#pragma omp simd reduction(+ : D)
      for (int64_t i = 0; i < HS; i++) D += gor[i] * orow[i];
#pragma omp simd
      for (int64_t j = 0; j <= t; j++) {
        p[j] = std::exp(p[j] - l);
        d[j] = p[j] * (d[j] - D) * scale;  // dS, scaled back to the raw scores' gradient
      }
      for (int64_t j = t + 1; j < r1; j++) p[j] = d[j] = 0.0f;
      lowp::from_f32(bf, P16 + t * T, p, r1);
      lowp::from_f32(bf, dS16 + t * T, d, r1);
    }
    const u16 *Pb = P16 + r0 * T, *dSb = dS16 + r0 * T;
    product(g, false, false, m, HS, r1, 1.0f, dSb, T, k, ldkv, 1.0f, dq + r0 * ldq, ldq, true);  // dQ += dS K
    product(g, true, false, r1, HS, m, 1.0f, dSb, T, q + r0 * ldq, ldq, 1.0f, dkf, HS, false);  // dK += dS^T Q
    product(g, true, false, r1, HS, m, 1.0f, Pb, T, go + r0 * ldo, ldo, 1.0f, dvf, HS, false);   // dV += P^T dO
  }
}

void attention_forward(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const AttentionShape& a,
                       float* scratch, OneDnnGemm* gemms) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.NH; h++) {
      const int th = omp_get_thread_num();
      const int64_t kv = b * T * a.ldkv + (h / a.group()) * HS;  // (T, HS) of k and v, ld ldkv
      head_forward(gemms[th], out + b * T * C + h * HS, C, lse + (b * a.NH + h) * T, q + b * T * a.ldq + h * HS,
                   k + kv, v + kv, a.ldq, a.ldkv, T, HS, scratch + th * per_thread(T, HS));
    }
}

// Over (batch, kv head) pairs, as the fp32 kernel: dk and dv stay fp32 over the group's query
// heads and are rounded once.
void attention_backward(u16* dq, u16* dk, u16* dv, const u16* dout, const u16* q, const u16* k, const u16* v,
                        const u16* out, const float* lse, const AttentionShape& a, float* scratch,
                        OneDnnGemm* gemms) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t kvh = 0; kvh < a.NKV; kvh++) {
      const int th = omp_get_thread_num();
      float* s = scratch + th * per_thread(T, HS);
      float* dkf = s + 3 * T * T;  // (T, HS) fp32 each
      float* dvf = dkf + T * HS;
      const int64_t kv = b * T * a.ldkv + kvh * HS;
      for (int64_t t = 0; t < T; t++) {  // the += convention: start from what is there
        lowp::to_f32(bf, dkf + t * HS, dk + kv + t * a.ldkv, HS);
        lowp::to_f32(bf, dvf + t * HS, dv + kv + t * a.ldkv, HS);
      }
      for (int64_t h = kvh * a.group(); h < (kvh + 1) * a.group(); h++) {
        const int64_t qo = b * T * a.ldq + h * HS, at = b * T * C + h * HS;  // (T, HS) blocks
        head_backward(gemms[th], dq + qo, dkf, dvf, dout + at, out + at, C, q + qo, k + kv, v + kv, a.ldq, a.ldkv,
                      lse + (b * a.NH + h) * T, T, HS, s);
      }
      for (int64_t t = 0; t < T; t++) {
        lowp::from_f32(bf, dk + kv + t * a.ldkv, dkf + t * HS, HS);
        lowp::from_f32(bf, dv + kv + t * a.ldkv, dvf + t * HS, HS);
      }
    }
}

}  // namespace meshlm::cpu::bf16attn
