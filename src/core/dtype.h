// Floating-point formats and conversions between them and fp32.
// All narrowing conversions round to nearest, ties to even (RNE), or stochastically when given
// random bits. Special values, per format:
//   bf16, fp16   IEEE-like: overflow rounds to inf, inf stays inf, NaN stays NaN (quiet).
//   fp8 e4m3     no inf (max finite 448): overflow and +-inf saturate to +-448, NaN stays NaN.
//   fp8 e5m2     IEEE-like (max finite 57344): overflow rounds to inf, NaN stays NaN.
// fp64 exists only for reference runs (the double-precision oracle of the tests).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace meshlm {

enum class DType : uint8_t { fp32, fp64, bf16, fp16, fp8_e4m3, fp8_e5m2 };

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
DType dtype_from_name(const std::string& name);  // throws meshlm::Error on an unknown name

// Description of a small binary float format with 1 sign bit.
struct FloatFormat {
  int exp_bits;
  int man_bits;
  int bias;
  bool has_inf;       // false: the all-ones exponent is used for finite values (e4m3)
  double max_finite;  // largest finite magnitude
};
FloatFormat float_format(DType dt);  // bf16, fp16, fp8_e4m3, fp8_e5m2

// The magnitudes that bound a format's ranges (fp32 and the small formats): the largest
// finite value, the smallest normal and the smallest subnormal one.
struct FormatRange {
  double max_finite, min_normal, min_subnormal;
};
FormatRange format_range(DType dt);

// Bits of a small format <-> fp32. `to_bits` rounds to nearest even.
uint16_t float_to_bits(DType dt, float x);
float bits_to_float(DType dt, uint16_t bits);
// Stochastic rounding: rounds |x| up to the next representable magnitude with probability
// equal to the distance from the one below, measured in units of the gap; `random` is 32
// uniformly random bits (seed it from what is rounded, not from the rank).
uint16_t float_to_bits_stochastic(DType dt, float x, uint32_t random);
// The generic (slow, format-table driven) RNE conversion that float_to_bits specializes; kept
// so tests can check the fast paths of core/lowp.h against it.
uint16_t reference_float_to_bits(DType dt, float x);

// Convenience wrappers for the 16-bit formats.
inline uint16_t float_to_bf16(float x) { return float_to_bits(DType::bf16, x); }
inline float bf16_to_float(uint16_t b) { return bits_to_float(DType::bf16, b); }
inline uint16_t float_to_fp16(float x) { return float_to_bits(DType::fp16, x); }
inline float fp16_to_float(uint16_t b) { return bits_to_float(DType::fp16, b); }

// Bulk conversions between fp32 buffers and buffers of `dt` (any DType).
void convert_from_f32(DType dt, void* dst, const float* src, size_t n);
void convert_to_f32(DType dt, float* dst, const void* src, size_t n);

}  // namespace meshlm
