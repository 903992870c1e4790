// dtype conversions, checked exhaustively against computations that share no code with
// src/core/dtype.cpp: values are enumerated from each format's definition (sign, exponent,
// mantissa as integers), fp16 is also checked against the CPU's own F16C conversion, and
// rounding is checked against brute-force nearest-value search over the whole format.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "core/dtype.h"
#include "core/lowp.h"
#include "core/rng.h"

using namespace meshlm;

namespace {

uint32_t float_to_bits_f32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

struct Spec {
  DType dt;
  int bits, exp_bits, man_bits, bias;
  bool has_inf;
};
const Spec kSpecs[] = {{DType::bf16, 16, 8, 7, 127, true},
                       {DType::fp16, 16, 5, 10, 15, true},
                       {DType::fp8_e4m3, 8, 4, 3, 7, false},
                       {DType::fp8_e5m2, 8, 5, 2, 15, true}};

// The value of a bit pattern from the textbook definition, in double.
double definition_value(const Spec& s, uint32_t bits) {
  const uint32_t sign = bits >> (s.bits - 1);
  const uint32_t exp = (bits >> s.man_bits) & ((1u << s.exp_bits) - 1);
  const uint32_t man = bits & ((1u << s.man_bits) - 1);
  const uint32_t exp_max = (1u << s.exp_bits) - 1;
  double v;
  if (s.has_inf && exp == exp_max) v = man == 0 ? INFINITY : NAN;
  else if (!s.has_inf && exp == exp_max && man == (1u << s.man_bits) - 1) v = NAN;  // e4m3 S.1111.111
  else if (exp == 0) v = man * std::pow(2.0, 1 - s.bias - s.man_bits);
  else v = (1.0 + man * std::pow(2.0, -s.man_bits)) * std::pow(2.0, int(exp) - s.bias);
  return sign ? -v : v;
}

}  // namespace

TEST(DType, Sizes) {
  EXPECT_EQ(dtype_size(DType::fp32), 4u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::fp8_e4m3), 1u);
  EXPECT_EQ(dtype_from_name("bf16"), DType::bf16);
  EXPECT_THROW(dtype_from_name("fp7"), std::exception);
}

TEST(DType, DecodeEveryBitPatternMatchesDefinition) {
  for (const Spec& s : kSpecs) {
    for (uint32_t b = 0; b < (1u << s.bits); b++) {
      const double want = definition_value(s, b);
      const float got = bits_to_float(s.dt, uint16_t(b));
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << dtype_name(s.dt) << " bits " << b;
      } else {
        ASSERT_EQ(double(got), want) << dtype_name(s.dt) << " bits " << b;
        ASSERT_EQ(std::signbit(got), bool(b >> (s.bits - 1))) << dtype_name(s.dt) << " bits " << b;
      }
    }
  }
}

TEST(DType, Fp16DecodeMatchesHardwareF16C) {
  for (uint32_t b = 0; b < 65536; b++) {
    const float hw = _cvtsh_ss(uint16_t(b));
    const float got = fp16_to_float(uint16_t(b));
    if (std::isnan(hw)) EXPECT_TRUE(std::isnan(got));
    else ASSERT_EQ(std::memcmp(&hw, &got, 4), 0) << "bits " << b;
  }
}

TEST(DType, MaxFiniteAndSpecials) {
  EXPECT_EQ(bits_to_float(DType::fp8_e4m3, 0x7E), 448.0f);
  EXPECT_EQ(bits_to_float(DType::fp8_e5m2, 0x7B), 57344.0f);
  EXPECT_TRUE(std::isinf(bits_to_float(DType::fp8_e5m2, 0x7C)));
  EXPECT_TRUE(std::isnan(bits_to_float(DType::fp8_e4m3, 0x7F)));
  // e4m3 has no inf: overflow and inf saturate, NaN stays NaN.
  EXPECT_EQ(bits_to_float(DType::fp8_e4m3, float_to_bits(DType::fp8_e4m3, 1e6f)), 448.0f);
  EXPECT_EQ(bits_to_float(DType::fp8_e4m3, float_to_bits(DType::fp8_e4m3, -INFINITY)), -448.0f);
  EXPECT_TRUE(std::isnan(bits_to_float(DType::fp8_e4m3, float_to_bits(DType::fp8_e4m3, NAN))));
  // e5m2, fp16, bf16: overflow rounds to inf (IEEE).
  EXPECT_TRUE(std::isinf(bits_to_float(DType::fp8_e5m2, float_to_bits(DType::fp8_e5m2, 61440.0f))));
  EXPECT_EQ(bits_to_float(DType::fp8_e5m2, float_to_bits(DType::fp8_e5m2, 61439.0f)), 57344.0f);
  EXPECT_TRUE(std::isinf(fp16_to_float(float_to_fp16(65520.0f))));
  EXPECT_EQ(fp16_to_float(float_to_fp16(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(INFINITY))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  EXPECT_TRUE(std::signbit(bf16_to_float(float_to_bf16(-0.0f))));
}

// Brute force: for every pair of adjacent finite values of each format, probe the exact
// midpoint (must go to the even pattern), just below and just above it, and the two values
// themselves; compare with the nearest value found by scanning the whole sorted table.
TEST(DType, RoundToNearestEvenAgainstBruteForce) {
  for (const Spec& s : kSpecs) {
    std::vector<std::pair<double, uint32_t>> table;  // non-negative finite values
    for (uint32_t b = 0; b < (1u << (s.bits - 1)); b++) {
      double v = definition_value(s, b);
      if (std::isfinite(v)) table.push_back({v, b});
    }
    std::sort(table.begin(), table.end());
    auto nearest = [&](double x) -> uint32_t {  // x >= 0, ties to even mantissa
      auto it = std::lower_bound(table.begin(), table.end(), std::make_pair(x, 0u));
      if (it == table.end()) return UINT32_MAX;  // above max: caller decides
      if (it->first == x || it == table.begin()) return it->second;
      auto lo = it - 1;
      double dl = x - lo->first, dh = it->first - x;
      if (dl < dh) return lo->second;
      if (dh < dl) return it->second;
      return (lo->second & 1) ? it->second : lo->second;
    };
    for (size_t i = 0; i + 1 < table.size(); i++) {
      const double a = table[i].first, b = table[i + 1].first;
      const double mid = 0.5 * (a + b);
      for (double x : {a, b, mid, std::nextafter(float(mid), 0.0f) * 1.0, std::nextafter(float(mid), INFINITY) * 1.0}) {
        const float xf = float(x);
        if (double(xf) != x) continue;  // probes must be exact floats
        for (float sx : {xf, -xf}) {
          const uint32_t want = nearest(double(xf)) | (std::signbit(sx) ? 1u << (s.bits - 1) : 0u);
          ASSERT_EQ(float_to_bits(s.dt, sx), want) << dtype_name(s.dt) << " x=" << sx;
        }
      }
    }
  }
}

TEST(DType, Bf16RoundingOfRandomFloatsMatchesBruteForce) {
  // bf16 has 2^15 non-negative patterns; check 200k random floats against the nearest value.
  for (int i = 0; i < 200000; i++) {
    uint32_t u = random_u32(7, 1, i) % 0x7f000000u;  // positive floats below bf16 overflow
    float x;
    std::memcpy(&x, &u, 4);
    const uint16_t got = float_to_bf16(x);
    const double v = bf16_to_float(got);
    const double up = bf16_to_float(uint16_t(got + 1)), dn = got ? bf16_to_float(uint16_t(got - 1)) : -1;
    ASSERT_LE(std::fabs(v - x), std::fabs(up - x)) << x;
    if (got) {
      ASSERT_LE(std::fabs(v - x), std::fabs(dn - x)) << x;
    }
  }
}

TEST(DType, StochasticRoundingPicksANeighbourWithTheRightProbability) {
  for (const Spec& s : kSpecs) {
    const float x = 1.0f + 0.3f * std::pow(2.0f, -float(s.man_bits));  // 30% of the way up
    const float lo = 1.0f, hi = 1.0f + std::pow(2.0f, -float(s.man_bits));
    int ups = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
      float r = bits_to_float(s.dt, float_to_bits_stochastic(s.dt, x, random_u32(3, 2, i)));
      ASSERT_TRUE(r == lo || r == hi) << dtype_name(s.dt) << " got " << r;
      ups += r == hi;
    }
    // Binomial(n, 0.3): standard deviation sqrt(n * 0.21) = 145; allow 5 sigma.
    EXPECT_NEAR(ups, 0.3 * n, 5 * 145) << dtype_name(s.dt);
    // Representable values are never moved.
    EXPECT_EQ(bits_to_float(s.dt, float_to_bits_stochastic(s.dt, 1.5f, 0xffffffffu)), 1.5f);
    EXPECT_EQ(bits_to_float(s.dt, float_to_bits_stochastic(s.dt, -1.5f, 0u)), -1.5f);
  }
}

TEST(DType, BulkConversionRoundTrips) {
  std::vector<float> src = {0.0f, -1.0f, 3.14159f, 1e-3f, 448.0f};
  for (DType dt : {DType::fp32, DType::fp64, DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2}) {
    std::vector<char> buf(src.size() * dtype_size(dt));
    std::vector<float> back(src.size());
    convert_from_f32(dt, buf.data(), src.data(), src.size());
    convert_to_f32(dt, back.data(), buf.data(), src.size());
    for (size_t i = 0; i < src.size(); i++) {
      float want = (dt == DType::fp32 || dt == DType::fp64) ? src[i]
                                                           : bits_to_float(dt, float_to_bits(dt, src[i]));
      EXPECT_EQ(back[i], want) << dtype_name(dt) << " " << src[i];
    }
  }
}

// The fast conversions of core/lowp.h (bit trick, F16C, AVX-512) against the generic,
// format-table driven reference: every 16-bit pattern back to fp32, and millions of floats
// (normal, subnormal in the target, beyond its range, specials) to 16 bits, singly and in bulk.
TEST(DType, FastConversionsMatchTheReferenceBitForBit) {
  for (DType dt : {DType::bf16, DType::fp16}) {
    for (uint32_t b = 0; b < 65536; b++) {
      const float ref = bits_to_float(dt, uint16_t(b));
      const float got = dt == DType::bf16 ? lowp::bf16_to_f32(uint16_t(b)) : lowp::fp16_to_f32(uint16_t(b));
      if (std::isnan(ref)) {
        ASSERT_TRUE(std::isnan(got)) << b;
      } else {
        ASSERT_EQ(float_to_bits_f32(ref), float_to_bits_f32(got)) << dtype_name(dt) << " bits " << b;
      }
    }
    std::vector<float> xs = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65520.0f, 65519.99f,
                             1e-8f, 2.98e-8f, 2.99e-8f, 5.96e-8f, 3.4e38f, 1e-40f, -1e-45f};
    for (uint64_t i = 0; i < 2000000; i++) {  // random bit patterns cover every exponent
      uint32_t u = random_u32(11, 5, i);
      float x;
      std::memcpy(&x, &u, 4);
      if (!std::isnan(x)) xs.push_back(x);
    }
    std::vector<uint16_t> bulk(xs.size());
    convert_from_f32(dt, bulk.data(), xs.data(), xs.size());
    for (size_t i = 0; i < xs.size(); i++) {
      const uint16_t ref = reference_float_to_bits(dt, xs[i]);
      ASSERT_EQ(float_to_bits(dt, xs[i]), ref) << dtype_name(dt) << " x=" << xs[i];
      ASSERT_EQ(bulk[i], ref) << dtype_name(dt) << " (bulk) x=" << xs[i];
    }
  }
}

// Stochastic rounding of many different values: the mean rounding error goes to 0 like
// 1/sqrt(draws) (unbiased), where round-to-nearest keeps a systematic error; the same
// random bits give the same result (reproducible).
TEST(DType, StochasticRoundingIsUnbiasedAndReproducible) {
  for (DType dt : {DType::bf16, DType::fp16}) {
    const int kDraws = 20000;
    for (int v = 0; v < 50; v++) {
      const float x = float(1.0 + uniform01(5, 7, uint64_t(v)));  // in [1, 2): gap 2^-man_bits
      const double gap = std::ldexp(1.0, -float_format(dt).man_bits);
      double err = 0;
      for (int i = 0; i < kDraws; i++) {
        const uint32_t r = random_u32(uint64_t(v), 9, uint64_t(i));
        const uint16_t b = float_to_bits_stochastic(dt, x, r);
        ASSERT_EQ(b, float_to_bits_stochastic(dt, x, r));
        err += double(bits_to_float(dt, b)) - double(x);
      }
      // Each draw's error is within one gap (variance <= gap^2 / 4): 5 sigma of the mean.
      EXPECT_LE(std::fabs(err / kDraws), 5 * 0.5 * gap / std::sqrt(double(kDraws)))
          << dtype_name(dt) << " x=" << x;
    }
  }
}

// The ranges of the formats, from their published definitions (IEEE binary16; bf16; OCP fp8).
TEST(DType, FormatRanges) {
  auto check = [](DType dt, double max, double min_normal, double min_sub) {
    const FormatRange r = format_range(dt);
    EXPECT_EQ(r.max_finite, max) << dtype_name(dt);
    EXPECT_EQ(r.min_normal, min_normal) << dtype_name(dt);
    EXPECT_EQ(r.min_subnormal, min_sub) << dtype_name(dt);
  };
  check(DType::fp32, 3.4028234663852886e38, 0x1p-126, 0x1p-149);
  check(DType::fp16, 65504.0, 0x1p-14, 0x1p-24);
  check(DType::bf16, 3.3895313892515355e38, 0x1p-126, 0x1p-133);
  check(DType::fp8_e4m3, 448.0, 0x1p-6, 0x1p-9);
  check(DType::fp8_e5m2, 57344.0, 0x1p-14, 0x1p-16);
}
