// The simulated fp8 GEMM operand on the cpu backend (ops.inc: amax, fake_quantize): bf16 in,
// bf16 out, the value rounded through e4m3 or e5m2 by bit arithmetic on its fp32 form.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/lowp.h"

namespace meshlm::cpu {

float amax_bf16(const uint16_t* x, int64_t n) {
  float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float a = std::fabs(lowp::bf16_to_f32(x[i]));
    if (a <= 3.4e38f) amax = std::max(amax, a);
  }
  return amax;
}

float fake_quantize_bf16(DType format, uint16_t* y, const uint16_t* x, int64_t n, float scale) {
  const FloatFormat f = float_format(format);
  const int drop = 23 - f.man_bits;                                 // fp32 mantissa bits removed
  const float min_normal = std::ldexp(1.0f, 1 - f.bias);            // smallest normal of the format
  const float quantum = std::ldexp(1.0f, 1 - f.bias - f.man_bits);  // its subnormal spacing
  const float max_finite = float(f.max_finite);
  const float inv = 1.0f / scale;
  float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float v = lowp::bf16_to_f32(x[i]);
    const float a = std::fabs(v);
    if (!std::isfinite(a)) {  // inf and NaN pass through
      y[i] = x[i];
      continue;
    }
    amax = std::max(amax, a);
    float r = a * scale;
    if (r >= min_normal) {  // round the fp32 mantissa to man_bits, ties to even
      uint32_t u;
      std::memcpy(&u, &r, 4);
      u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
      u &= ~((1u << drop) - 1);
      std::memcpy(&r, &u, 4);
    } else {
      r = std::nearbyint(r / quantum) * quantum;
    }
    if (r > max_finite) r = max_finite;  // satfinite
    y[i] = lowp::f32_to_bf16(std::copysign(r, v) * inv);
  }
  return amax;
}

}  // namespace meshlm::cpu
