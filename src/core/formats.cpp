#include "core/formats.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

const ElemInfo& elem_info(Elem e) {
  // name, bits, exp, man, bias, max finite, min normal, inf, NaN
  static const ElemInfo table[] = {
      {"e4m3", 8, 4, 3, 7, 448.0f, 0x1p-6f, false, true},     {"e5m2", 8, 5, 2, 15, 57344.0f, 0x1p-14f, true, true},
      {"e3m2", 6, 3, 2, 3, 28.0f, 0x1p-2f, false, false},     {"e2m3", 6, 2, 3, 1, 7.5f, 1.0f, false, false},
      {"e2m1", 4, 2, 1, 1, 6.0f, 1.0f, false, false},
  };
  return table[int(e)];
}

Elem elem_from_name(const std::string& name) {
  for (Elem e : {Elem::e4m3, Elem::e5m2, Elem::e3m2, Elem::e2m3, Elem::e2m1})
    if (name == elem_info(e).name) return e;
  throw Error("unknown element format '" + name + "' (expected e4m3, e5m2, e3m2, e2m3 or e2m1)");
}

float elem_from_bits(Elem e, uint8_t bits) {
  const ElemInfo& f = elem_info(e);
  const int ebits = bits >> f.man_bits & ((1 << f.exp_bits) - 1), man = bits & ((1 << f.man_bits) - 1);
  const float sign = (bits >> (f.exp_bits + f.man_bits) & 1) ? -1.0f : 1.0f;
  const int top = (1 << f.exp_bits) - 1;
  if (e == Elem::e4m3 && ebits == top && man == (1 << f.man_bits) - 1) return NAN;
  if (e == Elem::e5m2 && ebits == top) return man == 0 ? sign * INFINITY : NAN;
  if (ebits == 0) return sign * float(man) * f.quantum();
  return sign * std::ldexp(1.0f + float(man) / float(1 << f.man_bits), ebits - f.bias);
}

uint8_t elem_to_bits(Elem e, float value) {
  const ElemInfo& f = elem_info(e);
  const int sign_bit = f.exp_bits + f.man_bits;
  if (std::isnan(value)) {
    MESHLM_CHECK(f.has_nan, std::string(f.name) + " has no NaN");
    return uint8_t((1 << sign_bit) - 1);  // 0.1111.111 (e4m3), 0.11111.11 (e5m2)
  }
  const uint8_t s = std::signbit(value) ? uint8_t(1 << sign_bit) : 0;
  if (std::isinf(value) && f.has_inf) return uint8_t(s | (((1 << f.exp_bits) - 1) << f.man_bits));
  const float r = std::fabs(round_to_elem(f, std::isinf(value) ? std::copysign(f.max_finite, value) : value));
  if (r < f.min_normal) return uint8_t(s | int(r / f.quantum()));
  int ex = 0;
  const float m = std::frexp(r, &ex);  // r = m 2^ex, m in [0.5, 1)
  const int man = int((2 * m - 1) * float(1 << f.man_bits));
  return uint8_t(s | ((ex - 1 + f.bias) << f.man_bits) | man);
}

int mx_shared_exponent(const ElemInfo& f, float amax, bool round_up) {
  if (!(amax > 0)) return -127;
  int x = 0;
  if (round_up) {  // ceil(log2 r): r = m 2^e, m in [0.5, 1), is e - 1 when m is 0.5 exactly
    const double r = std::frexp(double(amax) / double(f.max_finite), &x);
    if (r == 0.5) x -= 1;
  } else {
    std::frexp(amax, &x);  // amax = m 2^x, m in [0.5, 1): floor(log2 amax) = x - 1
    x = x - 1 - f.emax();
  }
  return std::clamp(x, -127, 127);
}

float e4m3_tensor_scale(const ElemInfo& f, float amax) {
  return amax > 0 && std::isfinite(amax) ? 448.0f * f.max_finite / amax : 1.0f;
}

float block_multiplier(const QuantSpec& q, float amax, bool nonfinite, float tensor_scale) {
  const ElemInfo& f = elem_info(q.elem);
  switch (q.scale) {
    case ScaleKind::given: return q.given;
    case ScaleKind::pow2: {  // 2^floor(log2(max_finite / amax)), within fp32's normal range
      if (!(amax > 0)) return 1.0f;
      int e = 0;
      std::frexp(double(f.max_finite) / double(amax), &e);
      return std::ldexp(1.0f, std::clamp(e - 1, -126, 127));
    }
    case ScaleKind::e8m0:
      return nonfinite ? NAN : std::ldexp(1.0f, -mx_shared_exponent(f, amax, q.round_up));
    case ScaleKind::e4m3: {
      if (nonfinite) return NAN;
      const float d = round_to_elem(elem_info(Elem::e4m3), amax / f.max_finite * tensor_scale);
      return d > 0 ? tensor_scale / d : 0.0f;
    }
  }
  return 1.0f;
}

uint16_t hadamard_signs(uint64_t seed) { return uint16_t(mix64(seed ^ 0x48616461ull) & 0xffffu); }

double QuantSpec::bits_per_value() const {
  const double elem = elem_info(this->elem).bits;
  switch (granularity) {
    case Granularity::block: return elem + 8.0 / double(block);
    case Granularity::tile: return elem + 8.0 / double(block * block);
    default: return elem;  // one fp32 per tensor or per vector of thousands
  }
}

std::string QuantSpec::describe() const {
  static const char* scales[] = {"given scale", "pow2 scale", "e8m0 scale", "e4m3 scale"};
  std::string s = std::string(elem_info(elem).name) + ", " + scales[int(scale)];
  switch (granularity) {
    case Granularity::tensor: s += " per tensor"; break;
    case Granularity::vector: s += " per vector along axis " + std::to_string(axis); break;
    case Granularity::block: s += " per " + std::to_string(block) + " along axis " + std::to_string(axis); break;
    case Granularity::tile: s += " per " + std::to_string(block) + "x" + std::to_string(block) + " tile"; break;
  }
  if (hadamard) s += ", Hadamard";
  if (stochastic) s += ", stochastic rounding";
  return s;
}

}  // namespace meshlm
