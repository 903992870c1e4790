#include "precision/fp16_pure.h"

#include <cmath>

#include "core/lowp.h"

namespace meshlm {

namespace {
inline float h(float x) { return lowp::fp16_to_f32(lowp::f32_to_fp16(x)); }
}  // namespace

void round_to_fp16(float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = h(x[i]);
}

void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n,
                               const AdamWArgs& a) {
  const float b1 = a.beta1, b2 = a.beta2;
  const float c1 = 1.0f - std::pow(b1, float(a.step)), c2 = 1.0f - std::pow(b2, float(a.step));
  const float step_size = a.lr / c1, c2_sqrt = std::sqrt(c2);
  const float decay = 1.0f - a.lr * a.weight_decay;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float grad = h(g[i] * a.grad_scale);      // unscale / clip, in place on an fp16 grad
    float pi = h(p[i] * decay);                     // param.mul_(1 - lr * wd)
    float mi = h(m[i] + (1.0f - b1) * (grad - m[i]));  // exp_avg.lerp_(grad, 1 - beta1)
    float vi = h(v[i] * b2);                        // exp_avg_sq.mul_(beta2)
    vi = h(vi + (1.0f - b2) * grad * grad);         //   .addcmul_(grad, grad, 1 - beta2)
    float denom = h(std::sqrt(vi));                 // exp_avg_sq.sqrt()
    denom = h(denom / c2_sqrt);                     //   / bias_correction2_sqrt
    denom = h(denom + a.eps);                       //   .add_(eps): 1e-8 rounds away in fp16
    pi = h(pi - step_size * (mi / denom));          // param.addcdiv_(exp_avg, denom, -step_size)
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace meshlm
