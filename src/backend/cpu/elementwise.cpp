// Element-wise CPU kernels: GELU, residual add, AdamW, sum of squares, bias gradient.
// Each is one pass over memory (this machine is bandwidth-bound at ~22 GB/s, so a pass that
// can be fused into another should be).
#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"
#include "core/lowp.h"

namespace meshlm::cpu {

void gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = gelu(inp[i]);
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) dinp[i] += gelu_grad(inp[i]) * dout[i];
}

void residual_forward(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

namespace {
// One AdamW update of the elements [i0, i1); element-wise, so any split gives the same bits.
struct AdamWStep {
  float b1, b2, c1, c2, lr, wd, eps, gs;
  explicit AdamWStep(const AdamWArgs& a)
      : b1(a.beta1),
        b2(a.beta2),
        c1(1.0f - std::pow(a.beta1, float(a.step))),
        c2(1.0f - std::pow(a.beta2, float(a.step))),
        lr(a.lr),
        wd(a.weight_decay),
        eps(a.eps),
        gs(a.grad_scale) {}
  void operator()(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1) const {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      float grad = g[i] * gs;
      float mi = b1 * m[i] + (1.0f - b1) * grad;
      float vi = b2 * v[i] + (1.0f - b2) * grad * grad;
      m[i] = mi;
      v[i] = vi;
      p[i] -= lr * ((mi / c1) / (std::sqrt(vi / c2) + eps) + wd * p[i]);
    }
  }
};
constexpr int64_t kAdamBlock = 2048;  // elements per task: p stays in L1 for the rounding
}  // namespace

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a) {
  const AdamWStep step(a);
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += kAdamBlock) step(p, g, m, v, i0, std::min(n, i0 + kAdamBlock));
}

void adamw_update_round(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a, DType to,
                        uint16_t* copy) {
  const AdamWStep step(a);
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += kAdamBlock) {
    const int64_t i1 = std::min(n, i0 + kAdamBlock);
    step(p, g, m, v, i0, i1);
    lowp::from_f32(to, copy + i0, p + i0, i1 - i0);
  }
}

double sum_squares(const float* x, int64_t n) {
  // A fixed number of chunks, summed in a fixed order: the same bits on any thread count.
  constexpr int kChunks = 64;
  double part[kChunks];
  const int64_t per = (n + kChunks - 1) / kChunks;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < kChunks; k++) {
    const int64_t i0 = std::min(n, k * per), i1 = std::min(n, i0 + per);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; i++) s += double(x[i]) * double(x[i]);
    part[k] = s;
  }
  double s = 0;
  for (int k = 0; k < kChunks; k++) s += part[k];
  return s;
}

void bias_backward(float* dbias, const float* dout, int64_t N, int64_t OC) {
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t o0 = blk * kBlock, o1 = std::min(OC, o0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t n = 0; n < N; n++) {
      const float* d = dout + n * OC;
#pragma omp simd
      for (int64_t o = o0; o < o1; o++) acc[o - o0] += d[o];
    }
    for (int64_t o = o0; o < o1; o++) dbias[o] += acc[o - o0];
  }
}

}  // namespace meshlm::cpu
