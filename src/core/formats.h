// The element formats and scales of the precision ladder (docs/numerics.md): the small float
// formats a GEMM operand is quantized to, and how a block of elements shares one scale.
//
//   element  bits  exp  man  bias  max finite  min normal  specials
//   e4m3     8     4    3    7     448         2^-6        NaN (S.1111.111), no inf
//   e5m2     8     5    2    15    57344       2^-14       inf (S.11111.00), NaN
//   e3m2     6     3    2    3     28          2^-2        none
//   e2m3     6     2    3    1     7.5         1           none
//   e2m1     4     2    1    1     6           1           none
//
// Bits: sign at bit (exp + man), then the biased exponent, then the mantissa; an exponent field
// of 0 is subnormal (0.m x 2^(1 - bias)). Rounding to an element format is to nearest, ties to
// even, and saturating ("satfinite"): a finite value beyond the largest finite becomes the
// largest finite of its sign. Stochastic rounding instead rounds the magnitude up with
// probability equal to its distance from the value below, in units of the gap.
//
// Scales (per tensor, per vector along the reduction axis, or per block):
//   pow2   an fp32 power of two s, chosen from the amax: s = 2^floor(log2(max_finite / amax));
//          element = round(x s), read back as element / s (exact). fp8 "current" scaling.
//   e8m0   the OCP Microscaling shared scale 2^X, stored as X + 127 in 8 bits (255 is NaN).
//          X = floor(log2 amax) - emax (the OCP v1.0 rule; emax is the exponent of the
//          element's largest normal: the largest values may saturate), or with `round_up`
//          X = ceil(log2(amax / max_finite)) (never saturates; the rule of the MXFP8 training
//          recipes). element = round(x / 2^X), read back as element x 2^X (exact).
//   e4m3   NVFP4's block scale under an fp32 tensor scale S = 448 x 6 / amax(tensor): the
//          block's decode scale d = e4m3(amax(block) / 6 x S) (RNE, saturating), its encode
//          multiplier e = S / d (fp32); element = round(x e), read back as element / e.
//   given  one fp32 scale from outside (fp8 delayed scaling): as pow2 with that s.
// A block of an e8m0 or e4m3 scale holding an inf or NaN reads back as NaN throughout (its
// scale is NaN, as the OCP specification defines); with pow2 and given scales inf and NaN pass
// through and the finite values are quantized as usual.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace meshlm {

enum class Elem : uint8_t { e4m3, e5m2, e3m2, e2m3, e2m1 };

struct ElemInfo {
  const char* name;
  int bits, exp_bits, man_bits, bias;
  float max_finite, min_normal;
  bool has_inf, has_nan;
  int emax() const { return int(std::floor(std::log2(max_finite))); }  // exponent of the largest normal
  float quantum() const { return std::ldexp(1.0f, 1 - bias - man_bits); }  // the subnormal spacing
};
const ElemInfo& elem_info(Elem e);
Elem elem_from_name(const std::string& name);  // "e4m3", ...; throws on an unknown name

// The nearest value of `e` to finite v, ties to even, saturating. (Non-finite v: returned as is.)
inline float round_to_elem(const ElemInfo& f, float v) {
  const float a = std::fabs(v);
  if (!(a <= 3.4028235e38f)) return v;
  float r;
  if (a >= f.min_normal) {  // round the fp32 mantissa to man_bits, ties to even
    const int drop = 23 - f.man_bits;
    uint32_t u;
    std::memcpy(&u, &a, 4);
    u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1);
    std::memcpy(&r, &u, 4);
  } else {  // a multiple of the subnormal spacing (exact: a power-of-two scaling)
    const float q = f.quantum();
    r = std::nearbyint(a / q) * q;
  }
  return std::copysign(std::fmin(r, f.max_finite), v);
}

// Stochastic rounding of finite v to `e`: |v| between two neighbours lo < |v| < hi goes to hi
// with probability (|v| - lo) / (hi - lo), decided by the 32 random bits `random`; saturating.
inline float round_to_elem_stochastic(const ElemInfo& f, float v, uint32_t random) {
  const float a = std::fabs(v);
  if (!(a <= 3.4028235e38f)) return v;
  if (a >= f.max_finite) return std::copysign(f.max_finite, v);
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  const float gap = std::ldexp(1.0f, std::max(e - 1, 1 - f.bias) - f.man_bits);
  const float lo = std::floor(a / gap) * gap;
  const float up = (a - lo) / gap;  // in [0, 1)
  const float u = float(random >> 8) * 0x1p-24f;
  return std::copysign(std::fmin(u < up ? lo + gap : lo, f.max_finite), v);
}

// Bits <-> values of an element format (the definition: tests check round_to_elem against it).
uint8_t elem_to_bits(Elem e, float value);  // the bits of round_to_elem(value); NaN: e4m3/e5m2's NaN
float elem_from_bits(Elem e, uint8_t bits);

// The E8M0 scale: 2^(b - 127); b = 255 is NaN.
inline float e8m0_value(uint8_t b) { return b == 255 ? NAN : std::ldexp(1.0f, int(b) - 127); }
// The shared exponent X of a block with the given finite amax (see above), clamped to [-127, 127].
int mx_shared_exponent(const ElemInfo& f, float amax, bool round_up);

// How a GEMM operand is quantized: its element format, its scale and the granularity of the
// scale along the operand's reduction axis (a row-major (rows, cols) matrix; axis 1: along a
// row, the contiguous dimension; axis 0: along a column).
enum class ScaleKind : uint8_t { given, pow2, e8m0, e4m3 };
enum class Granularity : uint8_t {
  tensor,  // one scale
  vector,  // one per vector along the axis (per row for axis 1: fp8 "row-wise" scaling)
  block,   // one per `block` consecutive elements along the axis (MX: 32, NVFP4: 16)
  tile,    // one per block x block square (2-D scaling of weights: the same for either axis)
};
struct QuantSpec {
  Elem elem = Elem::e4m3;
  ScaleKind scale = ScaleKind::pow2;
  Granularity granularity = Granularity::tensor;
  int axis = 1;
  int64_t block = 32;
  bool round_up = true;    // e8m0: the scale rule (above)
  float given = 1.0f;      // ScaleKind::given: the scale
  bool hadamard = false;   // first a random Hadamard transform of every 16 along the axis
  uint64_t hadamard_seed = 0;
  bool stochastic = false;  // stochastic rounding of the elements, bits from (seed, stream, i)
  uint64_t seed = 0, stream = 0;
  // Quantized values per element, scales counted: 8.25 for MXFP8, 4.5 for NVFP4 (e4m3 per 16
  // plus an fp32 per tensor, negligible).
  double bits_per_value() const;
  std::string describe() const;  // "mxfp4 e2m1, e8m0 per 32 along axis 1"
};

// The encode multiplier m of one scale's elements (element = round(x m), read back as
// element / m) from their finite amax, whether they hold an inf or NaN, and the tensor scale S
// (e4m3 scales only): NaN for a non-finite block under an e8m0 or e4m3 scale; 0 when an e4m3
// block scale underflows to zero (the block reads back as zeros).
float block_multiplier(const QuantSpec& q, float amax, bool nonfinite, float tensor_scale);
// NVFP4's tensor scale S = 448 max_finite / amax(tensor), 1 for an all-zero tensor.
float e4m3_tensor_scale(const ElemInfo& f, float amax);
// The magnitude of a scaled element above which its saturation counts as an overflow: the
// largest finite, except under an e4m3 block scale, whose own rounding (to nearest, 2^-4
// relative) lets a block's largest values land up to that much above it by design.
inline float saturation_limit(const QuantSpec& q, const ElemInfo& f) {
  return q.scale == ScaleKind::e4m3 ? f.max_finite * (1.0f + 0x1p-4f) : f.max_finite;
}
// The read-back value of element e under multiplier m (0 for m = 0, keeping the sign).
inline float dequantize(float e, float m) { return m == 0 ? std::copysign(0.0f, e) : e / m; }

// The random Hadamard transform of 16 values: x <- H16 diag(signs) x / 4, orthonormal, so the
// product of two operands transformed alike along their shared reduction axis is unchanged.
// The signs (+-1) are bit i of `signs`. hadamard_signs draws them from a seed. constexpr, so
// that the CUDA kernels call this same function (nvcc --expt-relaxed-constexpr).
uint16_t hadamard_signs(uint64_t seed);
constexpr void hadamard16(float* x, int64_t stride, uint16_t signs) {
  float v[16];
  for (int i = 0; i < 16; i++) v[i] = (signs >> i & 1) ? -x[i * stride] : x[i * stride];
  for (int h = 1; h < 16; h *= 2)
    for (int i = 0; i < 16; i += 2 * h)
      for (int j = i; j < i + h; j++) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
  for (int i = 0; i < 16; i++) x[i * stride] = v[i] * 0.25f;
}

}  // namespace meshlm
