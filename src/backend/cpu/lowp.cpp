// The CPU kernels for 16-bit storage (bf16, fp16): activations, compute weights and activation
// gradients are 16-bit; parameter gradients, layernorm statistics, the attention log-sum-exp
// and the losses are fp32 (backend.h). Every kernel converts what it reads to fp32 (a row or
// a block at a time, in per-thread scratch or on the stack), runs the same fp32 arithmetic as
// the fp32 kernels - the row and element functions of kernels.h - and rounds each stored
// result once. Reductions keep the fp32 kernels' fixed orders, so results do not depend on
// the thread count.
#include <omp.h>

#include <algorithm>

#include "backend/cpu/kernels.h"
#include "core/lowp.h"

namespace meshlm::cpu::lowp16 {

namespace {
constexpr int64_t kBlock = 256;  // elements per stack block of the element-wise kernels
constexpr int64_t kCols = 64;    // columns per task of the column reductions
float* thread_scratch(float* scratch, int64_t per_thread) {
  return scratch + int64_t(omp_get_thread_num()) * per_thread;
}
}  // namespace

int64_t scratch_floats(Op op, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t Vp) {
  const int64_t th = omp_get_max_threads(), HS = NH > 0 ? C / NH : 0;
  switch (op) {
    case Op::embedding: return th * 2 * C;
    case Op::layernorm: return 2 * C + th * 3 * C;
    case Op::rmsnorm: return C + th * 3 * C;
    case Op::attention: return th * (2 * T * T + 8 * T * HS);
    case Op::crossentropy: return th * Vp;
    default: return 0;
  }
}

void embedding_forward(DType dt, u16* out, const int32_t* tokens, const u16* wte, const u16* wpe,
                       int64_t B, int64_t T, int64_t C, float* scratch) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      float* e = thread_scratch(scratch, 2 * C);  // (C)
      float* p = e + C;                           // (C)
      const int32_t tok = tokens[b * T + t];      // < 0: not in this rank's vocabulary slice
      if (tok >= 0) lowp::to_f32(dt, e, wte + int64_t(tok) * C, C);
      else std::fill(e, e + C, 0.0f);
      if (wpe) lowp::to_f32(dt, p, wpe + t * C, C);
      else std::fill(p, p + C, 0.0f);
      for (int64_t c = 0; c < C; c++) e[c] += p[c];
      lowp::from_f32(dt, out + (b * T + t) * C, e, C);
    }
}

void embedding_backward(DType dt, float* dwte, float* dwpe, const u16* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C) {
  const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {  // each task owns columns [c0, c1): race-free
    const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
    float d[kCols];
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++) {
        lowp::to_f32(dt, d, dout + (b * T + t) * C + c0, c1 - c0);
        if (tokens[b * T + t] >= 0) {
          float* e = dwte + int64_t(tokens[b * T + t]) * C;
          for (int64_t c = c0; c < c1; c++) e[c] += d[c - c0];
        }
        if (dwpe) {
          float* p = dwpe + t * C;
          for (int64_t c = c0; c < c1; c++) p[c] += d[c - c0];
        }
      }
  }
}

void layernorm_forward(DType dt, u16* out, float* mean, float* rstd, const u16* inp, const u16* w,
                       const u16* b, int64_t N, int64_t C, float* scratch) {
  float* wf = scratch;  // (C)
  float* bf = wf + C;   // (C)
  lowp::to_f32(dt, wf, w, C);
  lowp::to_f32(dt, bf, b, C);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = thread_scratch(scratch + 2 * C, 3 * C);  // (C)
    float* y = x + C;                                   // (C)
    lowp::to_f32(dt, x, inp + n * C, C);
    layernorm_row_forward(y, mean + n, rstd + n, x, wf, bf, C);
    lowp::from_f32(dt, out + n * C, y, C);
  }
}

// The sum is rounded to dt and read back (exact) before the norm: the stored sum is its input.
void residual_layernorm_forward(DType dt, u16* sum, u16* out, float* mean, float* rstd, const u16* a, const u16* b,
                                const u16* w, const u16* bias, int64_t N, int64_t C, float* scratch) {
  float* wf = scratch;  // (C)
  float* bf = wf + C;   // (C)
  lowp::to_f32(dt, wf, w, C);
  lowp::to_f32(dt, bf, bias, C);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = thread_scratch(scratch + 2 * C, 3 * C);  // (C)
    float* y = x + C;                                   // (C)
    lowp::to_f32(dt, x, a + n * C, C);
    lowp::to_f32(dt, y, b + n * C, C);
    for (int64_t c = 0; c < C; c++) x[c] += y[c];
    lowp::from_f32(dt, sum + n * C, x, C);
    lowp::to_f32(dt, x, sum + n * C, C);
    layernorm_row_forward(y, mean + n, rstd + n, x, wf, bf, C);
    lowp::from_f32(dt, out + n * C, y, C);
  }
}

void layernorm_backward(DType dt, u16* dinp, float* dw, float* db, const u16* dout, const u16* inp,
                        const u16* w, const float* mean, const float* rstd, int64_t N, int64_t C,
                        float* scratch) {
  float* wf = scratch;  // (C)
  lowp::to_f32(dt, wf, w, C);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = thread_scratch(scratch + 2 * C, 3 * C);  // (C)
    float* g = x + C;                                   // (C)
    float* dx = g + C;                                  // (C)
    lowp::to_f32(dt, x, inp + n * C, C);
    lowp::to_f32(dt, g, dout + n * C, C);
    lowp::to_f32(dt, dx, dinp + n * C, C);
    layernorm_row_backward(dx, g, x, wf, mean[n], rstd[n], C);
    lowp::from_f32(dt, dinp + n * C, dx, C);
  }
  const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols), w_ = c1 - c0;
    float acc_w[kCols] = {}, acc_b[kCols] = {}, x[kCols], g[kCols];
    for (int64_t n = 0; n < N; n++) {
      lowp::to_f32(dt, x, inp + n * C + c0, w_);
      lowp::to_f32(dt, g, dout + n * C + c0, w_);
      const float m = mean[n], s = rstd[n];
      for (int64_t c = 0; c < w_; c++) {
        acc_w[c] += g[c] * (x[c] - m) * s;
        acc_b[c] += g[c];
      }
    }
    for (int64_t c = c0; c < c1; c++) {
      dw[c] += acc_w[c - c0];
      db[c] += acc_b[c - c0];
    }
  }
}

namespace {
// Copies head h's (T, HS) block of a (T, ld) 16-bit array into a dense fp32 (T, HS) one.
void gather(DType dt, float* dst, const u16* src, int64_t ld, int64_t T, int64_t HS) {
  for (int64_t t = 0; t < T; t++) lowp::to_f32(dt, dst + t * HS, src + t * ld, HS);
}
}  // namespace

void attention_forward(DType dt, u16* out, float* lse, const u16* q, const u16* k, const u16* v,
                       const AttentionShape& a, float* scratch) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.NH; h++) {
      float* S = thread_scratch(scratch, 2 * T * T + 8 * T * HS);  // (T, T)
      float* qf = S + 2 * T * T;                                   // (T, HS) each
      float *kf = qf + T * HS, *vf = kf + T * HS, *o = vf + T * HS;
      const int64_t kv = b * T * a.ldkv + (h / a.group()) * HS;
      gather(dt, qf, q + b * T * a.ldq + h * HS, a.ldq, T, HS);
      gather(dt, kf, k + kv, a.ldkv, T, HS);
      gather(dt, vf, v + kv, a.ldkv, T, HS);
      attention_head_forward(o, HS, lse + (b * a.NH + h) * T, qf, kf, vf, HS, HS, T, HS, S);
      for (int64_t t = 0; t < T; t++) lowp::from_f32(dt, out + (b * T + t) * C + h * HS, o + t * HS, HS);
    }
}

// Over (batch, kv head) pairs, as the fp32 kernel: dk and dv stay in fp32 over the group's
// query heads and are rounded once.
void attention_backward(DType dt, u16* dq, u16* dk, u16* dv, const u16* dout, const u16* q, const u16* k,
                        const u16* v, const u16* out, const float* lse, const AttentionShape& a, float* scratch) {
  const int64_t T = a.T, HS = a.HS, C = a.NH * HS;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t kvh = 0; kvh < a.NKV; kvh++) {
      float* P = thread_scratch(scratch, 2 * T * T + 8 * T * HS);  // (T, T) twice
      float* qf = P + 2 * T * T;                                   // (T, HS) each
      float *kf = qf + T * HS, *vf = kf + T * HS, *o = vf + T * HS, *go = o + T * HS;
      float *dqf = go + T * HS, *dkf = dqf + T * HS, *dvf = dkf + T * HS;
      const int64_t kv = b * T * a.ldkv + kvh * HS;
      gather(dt, kf, k + kv, a.ldkv, T, HS);
      gather(dt, vf, v + kv, a.ldkv, T, HS);
      gather(dt, dkf, dk + kv, a.ldkv, T, HS);  // the += convention: start from what is there
      gather(dt, dvf, dv + kv, a.ldkv, T, HS);
      for (int64_t h = kvh * a.group(); h < (kvh + 1) * a.group(); h++) {
        const int64_t qo = b * T * a.ldq + h * HS, at = b * T * C + h * HS;
        gather(dt, qf, q + qo, a.ldq, T, HS);
        gather(dt, o, out + at, C, T, HS);
        gather(dt, go, dout + at, C, T, HS);
        gather(dt, dqf, dq + qo, a.ldq, T, HS);
        attention_head_backward(dqf, dkf, dvf, HS, HS, go, o, HS, qf, kf, vf, HS, HS, lse + (b * a.NH + h) * T, T,
                                HS, P, P + T * T);
        for (int64_t t = 0; t < T; t++) lowp::from_f32(dt, dq + qo + t * a.ldq, dqf + t * HS, HS);
      }
      for (int64_t t = 0; t < T; t++) {
        lowp::from_f32(dt, dk + kv + t * a.ldkv, dkf + t * HS, HS);
        lowp::from_f32(dt, dv + kv + t * a.ldkv, dvf + t * HS, HS);
      }
    }
}

void rmsnorm_forward(DType dt, u16* out, float* rstd, const u16* inp, const u16* w, int64_t N, int64_t C,
                     float eps, float* scratch) {
  float* wf = scratch;  // (C)
  lowp::to_f32(dt, wf, w, C);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = thread_scratch(scratch + C, 3 * C);  // (C)
    float* y = x + C;                               // (C)
    lowp::to_f32(dt, x, inp + n * C, C);
    rmsnorm_row_forward(y, rstd + n, x, wf, C, eps);
    lowp::from_f32(dt, out + n * C, y, C);
  }
}

void rmsnorm_backward(DType dt, u16* dinp, float* dw, const u16* dout, const u16* inp, const u16* w,
                      const float* rstd, int64_t N, int64_t C, float* scratch) {
  float* wf = scratch;  // (C)
  lowp::to_f32(dt, wf, w, C);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = thread_scratch(scratch + C, 3 * C);  // (C)
    float* g = x + C;                               // (C)
    float* dx = g + C;                              // (C)
    lowp::to_f32(dt, x, inp + n * C, C);
    lowp::to_f32(dt, g, dout + n * C, C);
    lowp::to_f32(dt, dx, dinp + n * C, C);
    rmsnorm_row_backward(dx, g, x, wf, rstd[n], C);
    lowp::from_f32(dt, dinp + n * C, dx, C);
  }
  const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols), w_ = c1 - c0;
    float acc[kCols] = {}, x[kCols], g[kCols];
    for (int64_t n = 0; n < N; n++) {
      lowp::to_f32(dt, x, inp + n * C + c0, w_);
      lowp::to_f32(dt, g, dout + n * C + c0, w_);
      const float r = rstd[n];
      for (int64_t c = 0; c < w_; c++) acc[c] += g[c] * x[c] * r;
    }
    for (int64_t c = c0; c < c1; c++) dw[c] += acc[c - c0];
  }
}

void rope(DType dt, u16* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS, float sign) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      float row[512];  // one head (HS <= 512)
      for (int64_t h = 0; h < H; h++) {
        u16* r = x + ((b * T + t) * H + h) * HS;
        lowp::to_f32(dt, row, r, HS);
        rope_row(row, cos_sin + t * HS, HS, sign);
        lowp::from_f32(dt, r, row, HS);
      }
    }
}

void swiglu_forward(DType dt, u16* out, const u16* gate, const u16* up, int64_t n) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
    float g[kBlock], u[kBlock];
    lowp::to_f32(dt, g, gate + i0, m);
    lowp::to_f32(dt, u, up + i0, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) g[i] = silu(g[i]) * u[i];
    lowp::from_f32(dt, out + i0, g, m);
  }
}

void swiglu_backward(DType dt, u16* dgate, u16* dup, const u16* dout, const u16* gate, const u16* up, int64_t n) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
    float g[kBlock], u[kBlock], d[kBlock], dg[kBlock], du[kBlock];
    lowp::to_f32(dt, g, gate + i0, m);
    lowp::to_f32(dt, u, up + i0, m);
    lowp::to_f32(dt, d, dout + i0, m);
    lowp::to_f32(dt, dg, dgate + i0, m);
    lowp::to_f32(dt, du, dup + i0, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
      const float s = 1.0f / (1.0f + std::exp(-g[i]));
      dg[i] += d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
      du[i] += d[i] * g[i] * s;
    }
    lowp::from_f32(dt, dgate + i0, dg, m);
    lowp::from_f32(dt, dup + i0, du, m);
  }
}

void gelu_forward(DType dt, u16* out, const u16* inp, int64_t n) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
    float x[kBlock];
    lowp::to_f32(dt, x, inp + i0, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) x[i] = gelu(x[i]);
    lowp::from_f32(dt, out + i0, x, m);
  }
}

void gelu_backward(DType dt, u16* dinp, const u16* inp, const u16* dout, int64_t n) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
    float x[kBlock], g[kBlock], d[kBlock];
    lowp::to_f32(dt, x, inp + i0, m);
    lowp::to_f32(dt, g, dout + i0, m);
    lowp::to_f32(dt, d, dinp + i0, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) d[i] += gelu_grad(x[i]) * g[i];
    lowp::from_f32(dt, dinp + i0, d, m);
  }
}

void residual_forward(DType dt, u16* out, const u16* a, const u16* b, int64_t n) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
    float x[kBlock], y[kBlock];
    lowp::to_f32(dt, x, a + i0, m);
    lowp::to_f32(dt, y, b + i0, m);
    for (int64_t i = 0; i < m; i++) x[i] += y[i];
    lowp::from_f32(dt, out + i0, x, m);
  }
}

void crossentropy_forward_backward(DType dt, float* losses, u16* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp, float* scratch) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* row = thread_scratch(scratch, Vp);  // (Vp)
    lowp::to_f32(dt, row, logits + n * Vp, Vp);
    losses[n] = crossentropy_row(row, targets[n], dloss, V, Vp);
    if (dloss != 0.0f) lowp::from_f32(dt, logits + n * Vp, row, Vp);
  }
}

void logsumexp_rows(DType dt, float* lse, const u16* logits, int64_t N, int64_t V, int64_t Vp, float* scratch) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* row = thread_scratch(scratch, Vp);  // (Vp)
    lowp::to_f32(dt, row, logits + n * Vp, V);
    lse[n] = logsumexp_row(row, V);
  }
}

void crossentropy_backward_given_lse(DType dt, u16* logits, const float* lse, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp, float* scratch) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* row = thread_scratch(scratch, Vp);  // (Vp)
    lowp::to_f32(dt, row, logits + n * Vp, Vp);
    crossentropy_grad_row(row, lse[n], targets[n], dloss, V, Vp);
    lowp::from_f32(dt, logits + n * Vp, row, Vp);
  }
}

void bias_backward(DType dt, float* dbias, const u16* dout, int64_t N, int64_t OC) {
  const int64_t nblocks = (OC + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t o0 = blk * kCols, o1 = std::min(OC, o0 + kCols);
    float acc[kCols] = {}, d[kCols];
    for (int64_t n = 0; n < N; n++) {
      lowp::to_f32(dt, d, dout + n * OC + o0, o1 - o0);
      for (int64_t o = 0; o < o1 - o0; o++) acc[o] += d[o];
    }
    for (int64_t o = o0; o < o1; o++) dbias[o] += acc[o - o0];
  }
}

}  // namespace meshlm::cpu::lowp16
