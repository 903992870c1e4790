// fp32 CPU kernels (OpenMP across cores, loops written for the compiler's AVX-512
// vectorizer). Contracts are those of backend.h. Every reduction has a fixed order that does
// not depend on the thread count, so a run is bit-reproducible (resume equals no resume).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/backend.h"
#include "core/vecmath.h"

namespace meshlm::cpu {

// One row (C): y = layernorm(x), saving *mean and *rstd; dx (C) += its input gradient.
void layernorm_row_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                           const float* b, int64_t C);
void layernorm_row_backward(float* dx, const float* g, const float* x, const float* w, float m,
                            float s, int64_t C);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                       const float* b, int64_t N, int64_t C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int64_t N, int64_t C);
// sum (N, C) = a + b, then layernorm_forward of sum, row by row (the row stays in L1).
void residual_layernorm_forward(float* sum, float* out, float* mean, float* rstd, const float* a, const float* b,
                                const float* w, const float* bias, int64_t N, int64_t C);
// Attention needs a scratch of attention_scratch_floats(T) floats (two T x T matrices per thread).
inline int64_t attention_scratch_floats(int64_t T, int threads) { return int64_t(threads) * 2 * T * T; }
// One query row per head against `len` cached key/value rows (ld a.ldkv): generation's step.
void attention_decode(float* out, const float* q, const float* k, const float* v, const AttentionShape& a,
                      int64_t len);
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionShape& a, float* scratch);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const AttentionShape& a,
                        float* scratch);
// One (batch, head) pair: q (T, HS) with leading dimension ldq, k and v with ldkv; o, dout
// (T, HS) with ldo; lse (T); S, P, dP (T, T) scratch. Backward adds into dq (leading dimension
// lddq), dk and dv (lddkv).
void attention_head_forward(float* o, int64_t ldo, float* lse, const float* q, const float* k,
                            const float* v, int64_t ldq, int64_t ldkv, int64_t T, int64_t HS, float* S);
void attention_head_backward(float* dq, float* dk, float* dv, int64_t lddq, int64_t lddkv, const float* go,
                             const float* o, int64_t ldo, const float* q, const float* k,
                             const float* v, int64_t ldq, int64_t ldkv, const float* lse, int64_t T,
                             int64_t HS, float* P, float* dP);
// Llama's kernels (cpu/llama.cpp): RMSNorm rows, rotary embedding, SwiGLU.
// Row t of a causal block of scaled scores (columns [0, r1)): softmax over [0, t], zeros in
// (t, r1); returns the row's log-sum-exp. Shared by the fp32 and bf16 attention kernels.
inline float causal_softmax_row(float* row, int64_t t, int64_t r1) {
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
  for (int64_t j = t + 1; j < r1; j++) row[j] = 0.0f;  // causal mask inside the block
  return mx + std::log(sum);
}
inline float silu(float g) { return g / (1.0f + std::exp(-g)); }
void rmsnorm_row_forward(float* y, float* rstd, const float* x, const float* w, int64_t C, float eps);
void rmsnorm_row_backward(float* dx, const float* g, const float* x, const float* w, float r, int64_t C);
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C, float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int64_t N, int64_t C);
// One head's row (HS) rotated by its position's (HS/2, 2) cos_sin; sign -1 rotates back.
void rope_row(float* x, const float* cos_sin, int64_t HS, float sign);
void rope(float* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS, float sign);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);
// GELU (tanh form) and its derivative, per element; tanh(u) = 1 - 2 / (exp(2u) + 1) is written
// with exp so loops over these vectorize (libmvec).
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
inline float tanh_via_exp(float u) { return 1.0f - 2.0f / (std::exp(2.0f * u) + 1.0f); }
inline float gelu(float x) {
  return 0.5f * x * (1.0f + tanh_via_exp(kGeluScale * (x + 0.044715f * x * x * x)));
}
inline float gelu_grad(float x) {
  float th = tanh_via_exp(kGeluScale * (x + 0.044715f * x * x * x));
  float du = kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void residual_forward(float* out, const float* a, const float* b, int64_t n);
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C);
void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp);
// One row (Vp) of logits: returns its loss, and (dloss != 0) overwrites it with its gradient.
float crossentropy_row(float* row, int64_t target, float dloss, int64_t V, int64_t Vp);
// The vocabulary-parallel halves (backend.h): per-row log-sum-exp; the gradient given it.
float logsumexp_row(const float* row, int64_t V);
void crossentropy_grad_row(float* row, float lse, int64_t target, float dloss, int64_t V, int64_t Vp);
void logsumexp_rows(float* lse, const float* logits, int64_t N, int64_t V, int64_t Vp);
void crossentropy_backward_given_lse(float* logits, const float* lse, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp);
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a);
// adamw_update, and copy (n) = the updated p rounded to `to` (bf16 or fp16), block by block.
void adamw_update_round(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a, DType to,
                        uint16_t* copy);
double sum_squares(const float* x, int64_t n);
// dbias (OC) += column sums of dout (N, OC).
void bias_backward(float* dbias, const float* dout, int64_t N, int64_t OC);

// The buffer utilities of ops.inc (cpu/convert.cpp, cpu/fp8.cpp, cpu/vocab_parallel.cpp).
void convert(DType to, void* dst, DType from, const void* src, int64_t n);
void convert_stochastic(DType to, uint16_t* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                        int64_t index0);
void round_to_format(DType format, float* x, int64_t n);
void accumulate(float* dst, const float* src, int64_t n);
double sum(const float* x, int64_t n);
TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n);
float amax_bf16(const uint16_t* x, int64_t n);
float fake_quantize_bf16(DType format, uint16_t* y, const uint16_t* x, int64_t n, float scale);
// ops.inc's quantize_fp8: q (rows, cols) or its transpose = fp8 codes of x * scale.
float quantize_fp8_bf16(DType format, uint8_t* q, const uint16_t* x, int64_t rows, int64_t cols, float scale,
                        bool transpose);
// dst (rows, cols, fp32, dense) = the values of fp8 codes src (rows, cols, leading dimension ld).
void fp8_to_f32(DType format, float* dst, const uint8_t* src, int64_t rows, int64_t cols, int64_t ld);
TensorStats quantize_blocks_bf16(const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols);
void crossentropy_partials(DType dt, float* sumexp, float* target_logit, int32_t* local_targets, const float* lse,
                           const float* row_max, const void* logits, const int32_t* targets, int64_t N, int64_t v0,
                           int64_t Vl);
void crossentropy_combine(float* lse, float* losses, const float* row_max, const float* sumexp,
                          const float* target_logit, int64_t N);

}  // namespace meshlm::cpu

// The same kernels for 16-bit storage (dt bf16 or fp16; backend.h says which buffers are
// 16-bit and which stay fp32). Those taking `scratch` need scratch_floats(op, ...) floats.
namespace meshlm::cpu::lowp16 {
using u16 = uint16_t;
int64_t scratch_floats(Op op, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t Vp);
void embedding_forward(DType dt, u16* out, const int32_t* tokens, const u16* wte, const u16* wpe,
                       int64_t B, int64_t T, int64_t C, float* scratch);
void embedding_backward(DType dt, float* dwte, float* dwpe, const u16* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C);
void layernorm_forward(DType dt, u16* out, float* mean, float* rstd, const u16* inp, const u16* w,
                       const u16* b, int64_t N, int64_t C, float* scratch);
void residual_layernorm_forward(DType dt, u16* sum, u16* out, float* mean, float* rstd, const u16* a, const u16* b,
                                const u16* w, const u16* bias, int64_t N, int64_t C, float* scratch);
void layernorm_backward(DType dt, u16* dinp, float* dw, float* db, const u16* dout, const u16* inp,
                        const u16* w, const float* mean, const float* rstd, int64_t N, int64_t C,
                        float* scratch);
void attention_forward(DType dt, u16* out, float* lse, const u16* q, const u16* k, const u16* v,
                       const AttentionShape& a, float* scratch);
void attention_backward(DType dt, u16* dq, u16* dk, u16* dv, const u16* dout, const u16* q, const u16* k,
                        const u16* v, const u16* out, const float* lse, const AttentionShape& a, float* scratch);
void rmsnorm_forward(DType dt, u16* out, float* rstd, const u16* inp, const u16* w, int64_t N, int64_t C,
                     float eps, float* scratch);
void rmsnorm_backward(DType dt, u16* dinp, float* dw, const u16* dout, const u16* inp, const u16* w,
                      const float* rstd, int64_t N, int64_t C, float* scratch);
void rope(DType dt, u16* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS, float sign);
void swiglu_forward(DType dt, u16* out, const u16* gate, const u16* up, int64_t n);
void swiglu_backward(DType dt, u16* dgate, u16* dup, const u16* dout, const u16* gate, const u16* up, int64_t n);
void gelu_forward(DType dt, u16* out, const u16* inp, int64_t n);
void gelu_backward(DType dt, u16* dinp, const u16* inp, const u16* dout, int64_t n);
void residual_forward(DType dt, u16* out, const u16* a, const u16* b, int64_t n);
void crossentropy_forward_backward(DType dt, float* losses, u16* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp, float* scratch);
void bias_backward(DType dt, float* dbias, const u16* dout, int64_t N, int64_t OC);
void logsumexp_rows(DType dt, float* lse, const u16* logits, int64_t N, int64_t V, int64_t Vp, float* scratch);
void crossentropy_backward_given_lse(DType dt, u16* logits, const float* lse, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp, float* scratch);
}  // namespace meshlm::cpu::lowp16

// bf16 attention with bf16 products (attention_bf16.cpp), for CPUs where oneDNN multiplies bf16
// natively: scratch_floats(T, HS, threads) floats of scratch, and one OneDnnGemm per thread.
namespace meshlm {
class OneDnnGemm;
}
namespace meshlm::cpu::bf16attn {
using u16 = uint16_t;
int64_t scratch_floats(int64_t T, int64_t HS, int threads);
void attention_forward(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const AttentionShape& a,
                       float* scratch, OneDnnGemm* gemms);
void attention_backward(u16* dq, u16* dk, u16* dv, const u16* dout, const u16* q, const u16* k, const u16* v,
                        const u16* out, const float* lse, const AttentionShape& a, float* scratch,
                        OneDnnGemm* gemms);
}  // namespace meshlm::cpu::bf16attn
