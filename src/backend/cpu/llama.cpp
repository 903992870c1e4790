// Llama's element-wise kernels on CPU: RMSNorm (rows in parallel; the weight gradient by column
// blocks, so no two threads share an accumulator), the rotary embedding (per head row, in
// place) and SwiGLU. Fixed reduction orders: results do not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

void rmsnorm_row_forward(float* y, float* rstd, const float* x, const float* w, int64_t C, float eps) {
  float ms = 0;
#pragma omp simd reduction(+ : ms)
  for (int64_t c = 0; c < C; c++) ms += x[c] * x[c];
  const float r = 1.0f / std::sqrt(ms / float(C) + eps);
#pragma omp simd
  for (int64_t c = 0; c < C; c++) y[c] = x[c] * r * w[c];
  *rstd = r;
}

// dx += r (g w) - r^3 x mean(g w x)
void rmsnorm_row_backward(float* dx, const float* g, const float* x, const float* w, float r, int64_t C) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t c = 0; c < C; c++) dot += g[c] * w[c] * x[c];
  const float k = r * r * r * dot / float(C);
#pragma omp simd
  for (int64_t c = 0; c < C; c++) dx[c] += r * g[c] * w[c] - k * x[c];
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) rmsnorm_row_forward(out + n * C, rstd + n, inp + n * C, w, C, eps);
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) rmsnorm_row_backward(dinp + n * C, dout + n * C, inp + n * C, w, rstd[n], C);
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t n = 0; n < N; n++) {
      const float* x = inp + n * C;
      const float* g = dout + n * C;
      const float r = rstd[n];
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) acc[c - c0] += g[c] * x[c] * r;
    }
    for (int64_t c = c0; c < c1; c++) dw[c] += acc[c - c0];
  }
}

void rope_row(float* x, const float* cos_sin, int64_t HS, float sign) {
  const int64_t half = HS / 2;
#pragma omp simd
  for (int64_t i = 0; i < half; i++) {
    const float c = cos_sin[2 * i], s = sign * cos_sin[2 * i + 1];
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c - x2 * s;
    x[i + half] = x2 * c + x1 * s;
  }
}

void rope(float* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS, float sign) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < H; h++) rope_row(x + ((b * T + t) * H + h) * HS, cos_sin + t * HS, HS, sign);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = silu(gate[i]) * up[i];
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float s = 1.0f / (1.0f + std::exp(-gate[i]));
    dgate[i] += dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
    dup[i] += dout[i] * gate[i] * s;
  }
}

}  // namespace meshlm::cpu
