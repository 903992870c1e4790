// Conversions are written with exact double arithmetic (every fp32 value and every rounding
// step below is exact in double), so one routine serves every small format. Speed-critical
// casts get vectorized kernels in the backend; this is the definition they are tested against.
#include "core/dtype.h"

#include "core/lowp.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace meshlm {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::fp32: return 4;
    case DType::fp64: return 8;
    case DType::bf16: case DType::fp16: return 2;
    case DType::fp8_e4m3: case DType::fp8_e5m2: return 1;
  }
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::fp32: return "fp32";
    case DType::fp64: return "fp64";
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp8_e4m3: return "fp8_e4m3";
    case DType::fp8_e5m2: return "fp8_e5m2";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType dt : {DType::fp32, DType::fp64, DType::bf16, DType::fp16, DType::fp8_e4m3,
                   DType::fp8_e5m2})
    if (name == dtype_name(dt)) return dt;
  throw Error("unknown dtype '" + name + "' (expected fp32, fp64, bf16, fp16, fp8_e4m3, fp8_e5m2)");
}

FloatFormat float_format(DType dt) {
  switch (dt) {
    case DType::bf16: return {8, 7, 127, true, 0x1.FEp127};
    case DType::fp16: return {5, 10, 15, true, 65504.0};
    case DType::fp8_e4m3: return {4, 3, 7, false, 448.0};
    case DType::fp8_e5m2: return {5, 2, 15, true, 57344.0};
    default: throw Error(std::string("float_format: not a small float format: ") + dtype_name(dt));
  }
}

namespace {

struct Encoded {
  uint16_t sign_bit, exp_mask, man_mask, nan_bits, inf_bits, max_bits;
};

Encoded encoding(const FloatFormat& f) {
  Encoded e{};
  e.sign_bit = uint16_t(1u << (f.exp_bits + f.man_bits));
  e.man_mask = uint16_t((1u << f.man_bits) - 1);
  e.exp_mask = uint16_t(((1u << f.exp_bits) - 1) << f.man_bits);
  if (f.has_inf) {
    e.inf_bits = e.exp_mask;
    e.nan_bits = uint16_t(e.exp_mask | (1u << (f.man_bits - 1)));  // quiet NaN
    e.max_bits = uint16_t(e.exp_mask - 1);
  } else {  // e4m3: S.1111.111 is NaN, S.1111.110 = 448 the max
    e.inf_bits = 0;
    e.nan_bits = uint16_t(e.exp_mask | e.man_mask);
    e.max_bits = uint16_t(e.nan_bits - 1);
  }
  return e;
}

// Exact encoding of a magnitude `a` that is already representable (0 <= a <= max_finite).
uint16_t encode_exact(const FloatFormat& f, double a) {
  if (a == 0) return 0;
  int e2;
  std::frexp(a, &e2);          // a = m * 2^e2, m in [0.5, 1)
  int unbiased = e2 - 1;       // a = 1.xxx * 2^unbiased
  int emin = 1 - f.bias;
  if (unbiased < emin) {       // subnormal: a = man * 2^(emin - man_bits)
    double man = std::ldexp(a, f.man_bits - emin);
    return uint16_t(man);
  }
  double man = std::ldexp(a, f.man_bits - unbiased) - std::ldexp(1.0, f.man_bits);
  return uint16_t((uint32_t(unbiased + f.bias) << f.man_bits) | uint32_t(man));
}

// Rounds magnitude a (finite, >= 0) to the format's grid; `random` < 0 means nearest-even,
// otherwise it is a uniform number in [0, 1) for stochastic rounding. Returns the rounded
// magnitude, possibly above max_finite (the caller handles overflow).
double round_magnitude(const FloatFormat& f, double a, double random) {
  if (a == 0) return 0;
  int e2;
  std::frexp(a, &e2);
  int unbiased = std::max(e2 - 1, 1 - f.bias);
  double quantum = std::ldexp(1.0, unbiased - f.man_bits);
  double t = a / quantum;  // exact: division by a power of two
  double n;
  if (random < 0) {
    n = std::nearbyint(t);  // default rounding mode: ties to even
  } else {
    double fl = std::floor(t);
    n = (random < t - fl) ? fl + 1 : fl;
  }
  return n * quantum;
}

uint16_t to_bits(DType dt, float x, double random) {
  const FloatFormat f = float_format(dt);
  const Encoded e = encoding(f);
  uint16_t sign = std::signbit(x) ? e.sign_bit : 0;
  if (std::isnan(x)) return uint16_t(sign | e.nan_bits);
  double a = std::fabs(double(x));
  if (std::isinf(x)) return uint16_t(sign | (f.has_inf ? e.inf_bits : e.max_bits));
  double r = round_magnitude(f, a, random);
  if (r > f.max_finite) return uint16_t(sign | (f.has_inf ? e.inf_bits : e.max_bits));
  return uint16_t(sign | encode_exact(f, r));
}

}  // namespace

uint16_t float_to_bits(DType dt, float x) {
  if (dt == DType::bf16) return lowp::f32_to_bf16(x);  // the bit trick: the same result
  return to_bits(dt, x, -1.0);
}

uint16_t float_to_bits_stochastic(DType dt, float x, uint32_t random) {
  if (dt == DType::bf16) return lowp::f32_to_bf16_stochastic(x, random);  // same distribution
  return to_bits(dt, x, double(random) * 0x1p-32);
}

uint16_t reference_float_to_bits(DType dt, float x) { return to_bits(dt, x, -1.0); }

float bits_to_float(DType dt, uint16_t bits) {
  if (dt == DType::bf16) {
    uint32_t u = uint32_t(bits) << 16;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
  }
  const FloatFormat f = float_format(dt);
  const Encoded e = encoding(f);
  bool neg = bits & e.sign_bit;
  uint32_t exp = (bits & e.exp_mask) >> f.man_bits;
  uint32_t man = bits & e.man_mask;
  double v;
  uint32_t exp_all = (1u << f.exp_bits) - 1;
  if (f.has_inf && exp == exp_all) {
    v = man ? NAN : INFINITY;
  } else if (!f.has_inf && (bits & ~e.sign_bit) == e.nan_bits) {
    v = NAN;
  } else if (exp == 0) {
    v = std::ldexp(double(man), 1 - f.bias - f.man_bits);
  } else {
    v = std::ldexp(double(man + (1u << f.man_bits)), int(exp) - f.bias - f.man_bits);
  }
  return float(neg ? -v : v);
}

void convert_from_f32(DType dt, void* dst, const float* src, size_t n) {
  switch (dt) {
    case DType::fp32: std::memcpy(dst, src, n * 4); return;
    case DType::fp64:
      for (size_t i = 0; i < n; i++) static_cast<double*>(dst)[i] = src[i];
      return;
    case DType::bf16: case DType::fp16:
      lowp::from_f32(dt, static_cast<uint16_t*>(dst), src, int64_t(n));
      return;
    case DType::fp8_e4m3: case DType::fp8_e5m2:
      for (size_t i = 0; i < n; i++)
        static_cast<uint8_t*>(dst)[i] = uint8_t(float_to_bits(dt, src[i]));
      return;
  }
}

void convert_to_f32(DType dt, float* dst, const void* src, size_t n) {
  switch (dt) {
    case DType::fp32: std::memcpy(dst, src, n * 4); return;
    case DType::fp64:
      for (size_t i = 0; i < n; i++) dst[i] = float(static_cast<const double*>(src)[i]);
      return;
    case DType::bf16: case DType::fp16:
      lowp::to_f32(dt, dst, static_cast<const uint16_t*>(src), int64_t(n));
      return;
    case DType::fp8_e4m3: case DType::fp8_e5m2:
      for (size_t i = 0; i < n; i++) dst[i] = bits_to_float(dt, static_cast<const uint8_t*>(src)[i]);
      return;
  }
}

FormatRange format_range(DType dt) {
  if (dt == DType::fp32) return {3.4028234663852886e38, 0x1p-126, 0x1p-149};
  const FloatFormat f = float_format(dt);
  return {f.max_finite, std::ldexp(1.0, 1 - f.bias), std::ldexp(1.0, 1 - f.bias - f.man_bits)};
}

}  // namespace meshlm
