// fp8 operands on the cpu backend (ops.inc: amax, fake_quantize, quantize_fp8): bf16 in, the
// value rounded through e4m3 or e5m2 by bit arithmetic on its fp32 form, and either read back
// in bf16 (the simulated operand) or stored as its one-byte code (the real one); and the codes
// widened to fp32 for gemm_fp8 (exact: every fp8 value is an fp32 value).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/lowp.h"

namespace meshlm::cpu {
namespace {

// The constants of one format's rounding.
struct Fp8Rounding {
  explicit Fp8Rounding(DType format) : f(float_format(format)) {
    drop = 23 - f.man_bits;
    min_normal = std::ldexp(1.0f, 1 - f.bias);
    quantum = std::ldexp(1.0f, 1 - f.bias - f.man_bits);
    max_finite = float(f.max_finite);
  }
  // |x| * scale rounded to the format, ties to even, saturating (a finite, non-negative input).
  float magnitude(float a, float scale) const {
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
    return std::min(r, max_finite);  // satfinite
  }
  // The code of a magnitude r that magnitude() returned (exactly a value of the format).
  uint8_t code(float r) const {
    if (r < min_normal) return uint8_t(r / quantum);  // subnormal (or zero): a count of quanta
    uint32_t u;
    std::memcpy(&u, &r, 4);
    const uint32_t e = (u >> 23) - 127 + uint32_t(f.bias);
    return uint8_t(e << f.man_bits | ((u >> drop) & ((1u << f.man_bits) - 1)));
  }
  FloatFormat f;
  int drop;
  float min_normal, quantum, max_finite;
};

}  // namespace

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
  const Fp8Rounding R(format);
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
    y[i] = lowp::f32_to_bf16(std::copysign(R.magnitude(a, scale), v) * inv);
  }
  return amax;
}

float quantize_fp8_bf16(DType format, uint8_t* q, const uint16_t* x, int64_t rows, int64_t cols, float scale,
                        bool transpose) {
  const Fp8Rounding R(format);
  const uint8_t sign_bit = 0x80;
  // Non-finite: e4m3 has only NaN (S.1111.111); e5m2 keeps inf (S.11111.00) and NaN.
  const bool e4m3 = format == DType::fp8_e4m3;
  float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const float v = lowp::bf16_to_f32(x[r * cols + c]);
      const float a = std::fabs(v);
      uint8_t code;
      if (std::isnan(a)) code = e4m3 ? 0x7f : 0x7e;
      else if (!std::isfinite(a)) code = e4m3 ? 0x7f : 0x7c;
      else {
        amax = std::max(amax, a);
        code = R.code(R.magnitude(a, scale));
      }
      q[transpose ? c * rows + r : r * cols + c] = uint8_t(code | (std::signbit(v) ? sign_bit : 0));
    }
  return amax;
}

void fp8_to_f32(DType format, float* dst, const uint8_t* src, int64_t rows, int64_t cols, int64_t ld) {
  float table[256];
  for (int i = 0; i < 256; i++) table[i] = bits_to_float(format, uint16_t(i));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = table[src[r * ld + c]];
}

}  // namespace meshlm::cpu
