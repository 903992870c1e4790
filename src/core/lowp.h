// Fast conversions between fp32 and the 16-bit storage formats, for the kernels' inner loops.
// They give bit-for-bit the results of dtype.h's reference conversions (round to nearest even,
// overflow to inf, NaN kept quiet, subnormals kept; test_dtype checks this over every bf16/fp16
// value and millions of floats): bf16 by the bit trick, fp16 by the F16C conversion
// instructions (vcvtps2ph / vcvtph2ps) where the compiler targets them, else dtype.cpp.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#define MESHLM_HAVE_F16C 1
#endif

#include "core/dtype.h"

namespace meshlm::lowp {

inline float bf16_to_f32(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

inline uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Stochastic rounding to bf16: add 16 random bits below the kept ones and truncate, so |x| goes
// to the next bf16 magnitude with probability (distance from the one below) / gap.
inline uint16_t f32_to_bf16_stochastic(float x, uint32_t random) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) >= 0x7f800000u) return f32_to_bf16(x);  // inf, NaN
  return uint16_t((u + (random >> 16)) >> 16);  // a carry past the largest finite gives inf
}

#ifdef MESHLM_HAVE_F16C
inline float fp16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f32_to_fp16(float x) { return _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT); }
#else
inline float fp16_to_f32(uint16_t h) { return bits_to_float(DType::fp16, h); }
inline uint16_t f32_to_fp16(float x) { return float_to_bits(DType::fp16, x); }
#endif

// GCC 12 reports its own _mm512_undefined_* placeholders inside the conversion intrinsics as
// "may be used uninitialized"; the intrinsics are correct, the warning is silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// n values of a 16-bit format (bf16 or fp16) <-> fp32.
inline void to_f32(DType dt, float* dst, const uint16_t* src, int64_t n) {
  if (dt == DType::bf16) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    return;
  }
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#endif
  for (; i < n; i++) dst[i] = fp16_to_f32(src[i]);
}

inline void from_f32(DType dt, uint16_t* dst, const float* src, int64_t n) {
  if (dt == DType::bf16) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
    return;
  }
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

// dst (16-bit) += src (fp32), the sum rounded once.
inline void add_from_f32(DType dt, uint16_t* dst, const float* src, int64_t n) {
  constexpr int64_t kBlock = 256;
  float buf[kBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = n - i0 < kBlock ? n - i0 : kBlock;
    to_f32(dt, buf, dst + i0, m);
    for (int64_t i = 0; i < m; i++) buf[i] += src[i0 + i];
    from_f32(dt, dst + i0, buf, m);
  }
}

#pragma GCC diagnostic pop

}  // namespace meshlm::lowp
