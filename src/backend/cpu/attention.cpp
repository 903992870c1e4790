// Causal self-attention on CPU, one query row at a time (the "flash" idea without tiling):
// forward keeps the row's T scores in a stack buffer just long enough to normalise them and
// saves only the log-sum-exp; backward recomputes each probability from q, k and the saved
// log-sum-exp. Work is split over (batch, head) pairs, which all cost the same, and each pair
// writes only its own slices of out / dqkv, so no two threads touch the same memory.
#include <alloca.h>

#include <cmath>

#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

static inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t NH) {
  const int64_t HS = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      float* p = static_cast<float*>(alloca(sizeof(float) * T));  // (T) scores of one row
      const float* base = qkv + b * T * C3;                        // (T, 3C)
      for (int64_t t = 0; t < T; t++) {
        const float* q = base + t * C3 + h * HS;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          p[j] = dot(q, base + j * C3 + C + h * HS, HS) * scale;
          mx = std::max(mx, p[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j <= t; j++) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const float inv = 1.0f / sum;
        float* o = out + (b * T + t) * C + h * HS;
#pragma omp simd
        for (int64_t i = 0; i < HS; i++) o[i] = 0;
        for (int64_t j = 0; j <= t; j++) {
          const float* v = base + j * C3 + 2 * C + h * HS;
          const float pj = p[j] * inv;
#pragma omp simd
          for (int64_t i = 0; i < HS; i++) o[i] += pj * v[i];
        }
        lse[(b * NH + h) * T + t] = mx + std::log(sum);
      }
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int64_t B, int64_t T, int64_t C, int64_t NH) {
  const int64_t HS = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      const float* base = qkv + b * T * C3;  // (T, 3C)
      float* dbase = dqkv + b * T * C3;      // (T, 3C)
      for (int64_t t = 0; t < T; t++) {
        const float* q = base + t * C3 + h * HS;
        const float* go = dout + (b * T + t) * C + h * HS;
        float* dq = dbase + t * C3 + h * HS;
        const float l = lse[(b * NH + h) * T + t];
        // D = sum_j p_j dp_j = dout . out, the softmax backward's row constant
        const float D = dot(go, out + (b * T + t) * C + h * HS, HS);
        for (int64_t j = 0; j <= t; j++) {
          const float* k = base + j * C3 + C + h * HS;
          const float* v = base + j * C3 + 2 * C + h * HS;
          float* dk = dbase + j * C3 + C + h * HS;
          float* dv = dbase + j * C3 + 2 * C + h * HS;
          const float pj = std::exp(dot(q, k, HS) * scale - l);
          const float ds = pj * (dot(go, v, HS) - D) * scale;
#pragma omp simd
          for (int64_t i = 0; i < HS; i++) {
            dq[i] += ds * k[i];
            dk[i] += ds * q[i];
            dv[i] += pj * go[i];
          }
        }
      }
    }
}

}  // namespace meshlm::cpu
