// LayerNorm on CPU. Forward: one row per iteration, two passes (mean, then variance of the
// centred values: no catastrophic cancellation). Backward: rows in parallel for dinp, then
// column blocks in parallel for dweight/dbias, so no thread ever shares an accumulator.
#include <cmath>

#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

void layernorm_row_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                           const float* b, int64_t C) {
  float m = 0;
#pragma omp simd reduction(+ : m)
  for (int64_t c = 0; c < C; c++) m += x[c];
  m /= float(C);
  float var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
  float s = 1.0f / std::sqrt(var / float(C) + 1e-5f);
#pragma omp simd
  for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * s * w[c] + b[c];
  *mean = m;
  *rstd = s;
}

void layernorm_row_backward(float* dx, const float* g, const float* x, const float* w, float m,
                            float s, int64_t C) {
  float mean_d = 0, mean_dx = 0;
#pragma omp simd reduction(+ : mean_d, mean_dx)
  for (int64_t c = 0; c < C; c++) {
    float gw = g[c] * w[c];
    mean_d += gw;
    mean_dx += gw * (x[c] - m) * s;
  }
  mean_d /= float(C);
  mean_dx /= float(C);
#pragma omp simd
  for (int64_t c = 0; c < C; c++) dx[c] += s * (g[c] * w[c] - mean_d - (x[c] - m) * s * mean_dx);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                       const float* b, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    layernorm_row_forward(out + n * C, mean + n, rstd + n, inp + n * C, w, b, C);  // rows (C)
}

void residual_layernorm_forward(float* sum, float* out, float* mean, float* rstd, const float* a, const float* b,
                                const float* w, const float* bias, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* x = sum + n * C;  // (C)
#pragma omp simd
    for (int64_t c = 0; c < C; c++) x[c] = a[n * C + c] + b[n * C + c];
    layernorm_row_forward(out + n * C, mean + n, rstd + n, x, w, bias, C);
  }
}

void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int64_t N,
                        int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    layernorm_row_backward(dinp + n * C, dout + n * C, inp + n * C, w, mean[n], rstd[n], C);
  constexpr int64_t kBlock = 64;  // columns per task: one cache line of 16 floats x 4
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    float acc_w[kBlock] = {}, acc_b[kBlock] = {};
    for (int64_t n = 0; n < N; n++) {
      const float* x = inp + n * C;
      const float* g = dout + n * C;
      const float m = mean[n], s = rstd[n];
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) {
        acc_w[c - c0] += g[c] * (x[c] - m) * s;
        acc_b[c - c0] += g[c];
      }
    }
    for (int64_t c = c0; c < c1; c++) {
      dw[c] += acc_w[c - c0];
      db[c] += acc_b[c - c0];
    }
  }
}

}  // namespace meshlm::cpu
