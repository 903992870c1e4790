// The arithmetic of quantize_blocks on the device (quantize.cu) as host-device functions: core/
// formats.h's rounding, scales and Hadamard transform restated in what nvcc compiles on both
// sides, and the map of elements to scale blocks. tests/backend/test_cuda_host.cpp checks each
// against core/formats bit for bit and runs the kernels' steps on the host against the
// reference kernel.
#pragma once
#include "backend/cuda/device_math.h"
#include "core/formats.h"
#include "core/rng.h"

namespace meshlm::cuda {

// An element format's constants (core/formats.h ElemInfo).
struct ElemF {
  int man_bits, bias, emax;
  float max_finite, min_normal, quantum;
};
inline ElemF elem_f(Elem e) {
  const ElemInfo& f = elem_info(e);
  return {f.man_bits, f.bias, f.emax(), f.max_finite, f.min_normal, f.quantum()};
}

// round_to_elem: nearest, ties to even, saturating; non-finite v as is.
MESHLM_HD float round_elem(const ElemF& f, float v) {
  const float a = abs_f(v);
  if (!(a <= 3.4028235e38f)) return v;
  float r;
  if (a >= f.min_normal) {  // round the fp32 mantissa to man_bits, ties to even
    const int drop = 23 - f.man_bits;
    uint32_t u = f2u(a);
    u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1);
    r = u2f(u);
  } else {
    r = nearbyintf(a / f.quantum) * f.quantum;
  }
  return copysignf(fminf(r, f.max_finite), v);
}

// round_to_elem_stochastic with the 32 random bits `random`.
MESHLM_HD float round_elem_stochastic(const ElemF& f, float v, uint32_t random) {
  const float a = abs_f(v);
  if (!(a <= 3.4028235e38f)) return v;
  if (a >= f.max_finite) return copysignf(f.max_finite, v);
  int e = 0;
  frexpf(a, &e);
  const int ge = e - 1 > 1 - f.bias ? e - 1 : 1 - f.bias;
  const float gap = ldexpf(1.0f, ge - f.man_bits);
  const float lo = floorf(a / gap) * gap;
  const float up = (a - lo) / gap;
  const float u = float(random >> 8) * 0x1p-24f;
  return copysignf(fminf(u < up ? lo + gap : lo, f.max_finite), v);
}

// What the kernels need of a QuantSpec.
struct QuantParams {
  ElemF f, e4m3;
  ScaleKind scale;
  Granularity granularity;
  int axis;
  int64_t block;
  bool round_up, stochastic, hadamard;
  float given;
  uint64_t random_base;  // core/rng.h random_base(seed, stream)
  uint16_t signs;        // hadamard_signs(hadamard_seed)
};
inline QuantParams quant_params(const QuantSpec& s) {
  return {elem_f(s.elem), elem_f(Elem::e4m3), s.scale,    s.granularity, s.axis, s.block, s.round_up, s.stochastic,
          s.hadamard,     s.given,            random_base(s.seed, s.stream), hadamard_signs(s.hadamard_seed)};
}

// mx_shared_exponent.
MESHLM_HD int mx_exponent(const ElemF& f, float amax, bool round_up) {
  if (!(amax > 0)) return -127;
  int x = 0;
  if (round_up) {
    const double r = frexp(double(amax) / double(f.max_finite), &x);
    if (r == 0.5) x -= 1;
  } else {
    frexpf(amax, &x);
    x = x - 1 - f.emax;
  }
  return x < -127 ? -127 : x > 127 ? 127 : x;
}
// e4m3_tensor_scale.
MESHLM_HD float e4m3_scale_of_tensor(const ElemF& f, float amax) {
  return amax > 0 && is_finite(amax) ? 448.0f * f.max_finite / amax : 1.0f;
}
// block_multiplier.
MESHLM_HD float block_mult(const QuantParams& q, float amax, bool nonfinite, float tensor_scale) {
  const float nan = u2f(0x7fc00000u);
  switch (q.scale) {
    case ScaleKind::given: return q.given;
    case ScaleKind::pow2: {
      if (!(amax > 0)) return 1.0f;
      int e = 0;
      frexp(double(q.f.max_finite) / double(amax), &e);
      e -= 1;
      return ldexpf(1.0f, e < -126 ? -126 : e > 127 ? 127 : e);
    }
    case ScaleKind::e8m0: return nonfinite ? nan : ldexpf(1.0f, -mx_exponent(q.f, amax, q.round_up));
    case ScaleKind::e4m3: {
      if (nonfinite) return nan;
      const float d = round_elem(q.e4m3, amax / q.f.max_finite * tensor_scale);
      return d > 0 ? tensor_scale / d : 0.0f;
    }
  }
  return 1.0f;
}

// The scale block of element (r, c) (reference/quantize.cpp's BlockMap), how many there are,
// and the element range of block b (tensor granularity: the whole matrix).
MESHLM_HD int64_t blocks_per_row(const QuantParams& q, int64_t cols) { return (cols + q.block - 1) / q.block; }
MESHLM_HD int64_t block_of(const QuantParams& q, int64_t cols, int64_t r, int64_t c) {
  switch (q.granularity) {
    case Granularity::tensor: return 0;
    case Granularity::vector: return q.axis == 1 ? r : c;
    case Granularity::block: return q.axis == 1 ? r * blocks_per_row(q, cols) + c / q.block : (r / q.block) * cols + c;
    case Granularity::tile: return (r / q.block) * blocks_per_row(q, cols) + c / q.block;
  }
  return 0;
}
MESHLM_HD int64_t block_count(const QuantParams& q, int64_t rows, int64_t cols) {
  return block_of(q, cols, rows - 1, cols - 1) + 1;
}
struct BlockRange {
  int64_t r0, r1, c0, c1;  // rows [r0, r1) x cols [c0, c1)
};
MESHLM_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
MESHLM_HD BlockRange block_range(const QuantParams& q, int64_t rows, int64_t cols, int64_t b) {
  const int64_t k = q.block, pr = blocks_per_row(q, cols);
  switch (q.granularity) {
    case Granularity::tensor: return {0, rows, 0, cols};
    case Granularity::vector: return q.axis == 1 ? BlockRange{b, b + 1, 0, cols} : BlockRange{0, rows, b, b + 1};
    case Granularity::block:
      if (q.axis == 1) return {b / pr, b / pr + 1, (b % pr) * k, min64((b % pr) * k + k, cols)};
      return {(b / cols) * k, min64((b / cols) * k + k, rows), b % cols, b % cols + 1};
    case Granularity::tile: return {(b / pr) * k, min64((b / pr) * k + k, rows), (b % pr) * k, min64((b % pr) * k + k, cols)};
  }
  return {0, 0, 0, 0};
}

// core/formats.h's hadamard16 on 16 consecutive values (constexpr: callable on the device).
MESHLM_HD void hadamard16_local(float* v, uint16_t signs) { hadamard16(v, 1, signs); }
// The 16 elements of Hadamard group g along the axis: the first (r, c) and the stride.
struct HadamardGroup {
  int64_t first, stride;
};
MESHLM_HD HadamardGroup hadamard_group(int axis, int64_t cols, int64_t g) {
  if (axis == 1) return {g * 16, 1};  // (r, 16 j): rows of cols / 16 groups, consecutive
  return {(g / cols) * 16 * cols + g % cols, cols};
}

// One element's read-back and what it counts (reference::quantize_blocks_bf16's inner step):
// xv the (transformed) value, mb its block's multiplier, i its index for stochastic rounding.
struct QuantOut {
  float y;
  bool overflow, zero, underflow, subnormal;
};
MESHLM_HD QuantOut quantize_element(const QuantParams& q, float xv, float mb, int64_t i) {
  QuantOut o{0.0f, false, false, false, false};
  const float nan = u2f(0x7fc00000u);
  if (!is_finite(xv)) {
    o.overflow = true;
    o.y = mb != mb ? nan : xv;
    return o;
  }
  if (mb != mb) {
    o.y = nan;
    return o;
  }
  const float t = xv * mb;
  const float limit = q.scale == ScaleKind::e4m3 ? q.f.max_finite * (1.0f + 0x1p-4f) : q.f.max_finite;
  o.overflow = abs_f(t) > limit;
  const float e = q.stochastic ? round_elem_stochastic(q.f, t, random_bits(q.random_base, uint64_t(i))) : round_elem(q.f, t);
  o.y = mb == 0 ? copysignf(0.0f, e) : e / mb;
  o.zero = xv == 0;
  o.underflow = xv != 0 && o.y == 0;
  o.subnormal = e != 0 && abs_f(e) < q.f.min_normal;
  return o;
}

}  // namespace meshlm::cuda
