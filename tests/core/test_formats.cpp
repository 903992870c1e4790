// The element formats of the precision ladder (core/formats.h) against their definitions:
// exact bit patterns of chosen values, every code's round trip, the fast rounding against the
// table search of the reference, error bounds, stochastic rounding, E8M0 and the MX scale rule,
// and the Hadamard transform's orthonormality.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "backend/reference/kernels.h"
#include "core/formats.h"
#include "core/rng.h"

using namespace meshlm;

namespace {
const Elem kAll[] = {Elem::e4m3, Elem::e5m2, Elem::e3m2, Elem::e2m3, Elem::e2m1};
}

TEST(Formats, ChosenValuesHaveTheDefinedBits) {
  struct Case {
    Elem e;
    float v;
    int bits;
  };
  const Case cases[] = {
      // e2m1: 0 0.5 1 1.5 2 3 4 6; ties go to the even code, beyond 6 saturates
      {Elem::e2m1, 0.0f, 0x0}, {Elem::e2m1, 0.5f, 0x1}, {Elem::e2m1, 1.0f, 0x2}, {Elem::e2m1, 1.5f, 0x3},
      {Elem::e2m1, 2.0f, 0x4}, {Elem::e2m1, 3.0f, 0x5}, {Elem::e2m1, 4.0f, 0x6}, {Elem::e2m1, 6.0f, 0x7},
      {Elem::e2m1, -6.0f, 0xF}, {Elem::e2m1, 0.25f, 0x0}, {Elem::e2m1, 0.75f, 0x2}, {Elem::e2m1, 2.5f, 0x4},
      {Elem::e2m1, 5.0f, 0x6}, {Elem::e2m1, 7.0f, 0x7}, {Elem::e2m1, 1e9f, 0x7}, {Elem::e2m1, -INFINITY, 0xF},
      // e2m3: subnormal step 1/8, max 7.5
      {Elem::e2m3, 0.125f, 0x01}, {Elem::e2m3, 0.875f, 0x07}, {Elem::e2m3, 1.0f, 0x08}, {Elem::e2m3, 7.5f, 0x1F},
      {Elem::e2m3, -1.125f, 0x29}, {Elem::e2m3, 100.0f, 0x1F},
      // e3m2: subnormal step 1/16, min normal 1/4, max 28
      {Elem::e3m2, 0.0625f, 0x01}, {Elem::e3m2, 0.25f, 0x04}, {Elem::e3m2, 1.0f, 0x0C}, {Elem::e3m2, 28.0f, 0x1F},
      {Elem::e3m2, -0.1875f, 0x23}, {Elem::e3m2, 30.0f, 0x1F},
      // e4m3 (OCP): max 448 = 0x7E, NaN 0x7F, subnormal step 2^-9
      {Elem::e4m3, 1.0f, 0x38}, {Elem::e4m3, -1.0f, 0xB8}, {Elem::e4m3, 448.0f, 0x7E}, {Elem::e4m3, 464.0f, 0x7E},
      {Elem::e4m3, 0x1p-9f, 0x01}, {Elem::e4m3, 0x1p-6f, 0x08}, {Elem::e4m3, NAN, 0x7F}, {Elem::e4m3, 1e6f, 0x7E},
      // e5m2: max 57344 = 0x7B, inf 0x7C, subnormal step 2^-16
      {Elem::e5m2, 1.0f, 0x3C}, {Elem::e5m2, 57344.0f, 0x7B}, {Elem::e5m2, 65536.0f, 0x7B},
      {Elem::e5m2, INFINITY, 0x7C}, {Elem::e5m2, -INFINITY, 0xFC}, {Elem::e5m2, 0x1p-16f, 0x01}, {Elem::e5m2, NAN, 0x7F},
  };
  for (const Case& c : cases) EXPECT_EQ(int(elem_to_bits(c.e, c.v)), c.bits) << elem_info(c.e).name << " " << c.v;
}

TEST(Formats, EveryCodeRoundTrips) {
  for (Elem e : kAll) {
    const ElemInfo& f = elem_info(e);
    int finite = 0;
    for (int code = 0; code < 1 << f.bits; code++) {
      const float v = elem_from_bits(e, uint8_t(code));
      if (std::isnan(v)) continue;
      finite += std::isfinite(v);
      EXPECT_EQ(int(elem_to_bits(e, v)), code) << f.name << " code " << code << " value " << v;
      if (std::isfinite(v)) {
        EXPECT_EQ(round_to_elem(f, v), v);
      }
    }
    // e4m3: 2 NaN codes; e5m2: 2 inf and 6 NaN codes; fp6 and fp4 use every code.
    const int expected = e == Elem::e4m3 ? 254 : e == Elem::e5m2 ? 248 : 1 << f.bits;
    EXPECT_EQ(finite, expected) << f.name;
    EXPECT_EQ(elem_from_bits(e, elem_to_bits(e, f.max_finite)), f.max_finite);
  }
}

// The bit arithmetic of round_to_elem against the reference's search of the value table, on
// random values over the whole range, on every midpoint between neighbours (the ties) and just
// around them.
TEST(Formats, FastRoundingEqualsTheTableSearch) {
  for (Elem e : kAll) {
    const ElemInfo& f = elem_info(e);
    std::vector<float> probes;
    for (int code = 0; code + 1 < 1 << (f.bits - 1); code++) {
      const float a = elem_from_bits(e, uint8_t(code)), b = elem_from_bits(e, uint8_t(code + 1));
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      const float mid = (a + b) / 2;
      probes.insert(probes.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f), a, b});
    }
    for (uint64_t i = 0; i < 200000; i++)
      probes.push_back(float((uniform01(3, uint64_t(e), i) - 0.5) * std::ldexp(1.0, int(40 * uniform01(4, uint64_t(e), i)) - 24)));
    for (float p : probes)
      for (float v : {p, -p}) ASSERT_EQ(round_to_elem(f, v), reference::round_elem_by_table(e, v)) << f.name << " " << v;
  }
}

// RNE: relative error <= 2^-(m+1) in the normal range, absolute <= half the subnormal step
// below it; never beyond the largest finite.
TEST(Formats, RoundingErrorWithinTheFormatsBound) {
  for (Elem e : kAll) {
    const ElemInfo& f = elem_info(e);
    for (uint64_t i = 0; i < 100000; i++) {
      const float x = float(uniform01(7, uint64_t(e), i) * f.max_finite);
      const float r = round_to_elem(f, x);
      const double bound = x >= f.min_normal ? std::ldexp(double(x), -(f.man_bits + 1)) : f.quantum() / 2.0;
      ASSERT_LE(std::fabs(double(r) - x), bound) << f.name << " " << x;
    }
  }
}

// Stochastic rounding gives one of the two neighbours, the upper one with probability equal
// to the distance from the lower one (checked to 5 standard deviations), and is exact on
// representable values.
TEST(Formats, StochasticRoundingIsUnbiased) {
  for (Elem e : kAll) {
    const ElemInfo& f = elem_info(e);
    for (float x : {0.3f * f.min_normal, 1.3f * f.min_normal, 0.7f * f.max_finite, -0.45f * f.max_finite}) {
      std::map<float, int> seen;
      const int n = 20000;
      double sum = 0;
      for (int i = 0; i < n; i++) {
        const float r = round_to_elem_stochastic(f, x, random_u32(11, uint64_t(e), uint64_t(i)));
        seen[r]++;
        sum += r;
      }
      EXPECT_LE(seen.size(), 2u) << f.name << " " << x;
      const double gap = std::fabs(double(seen.rbegin()->first) - double(seen.begin()->first));
      EXPECT_NEAR(sum / n, x, 5 * gap / (2 * std::sqrt(double(n))) + 1e-12) << f.name << " " << x;
    }
    EXPECT_EQ(round_to_elem_stochastic(f, f.max_finite, 0xffffffffu), f.max_finite);
    EXPECT_EQ(round_to_elem_stochastic(f, 2 * f.max_finite, 0u), f.max_finite);  // saturating
    EXPECT_EQ(round_to_elem_stochastic(f, 1.0f, 0xffffffffu), 1.0f);
  }
}

TEST(Formats, E8m0AndTheSharedExponentRule) {
  EXPECT_EQ(e8m0_value(127), 1.0f);
  EXPECT_EQ(e8m0_value(0), 0x1p-127f);
  EXPECT_EQ(e8m0_value(254), 0x1p127f);
  EXPECT_TRUE(std::isnan(e8m0_value(255)));
  const ElemInfo &fp4 = elem_info(Elem::e2m1), &e4m3 = elem_info(Elem::e4m3);
  EXPECT_EQ(fp4.emax(), 2);
  EXPECT_EQ(e4m3.emax(), 8);
  EXPECT_EQ(elem_info(Elem::e5m2).emax(), 15);
  EXPECT_EQ(elem_info(Elem::e3m2).emax(), 4);
  EXPECT_EQ(elem_info(Elem::e2m3).emax(), 2);
  // OCP: X = floor(log2 amax) - emax; round_up: ceil(log2(amax / max_finite)).
  EXPECT_EQ(mx_shared_exponent(fp4, 6.0f, false), 0);
  EXPECT_EQ(mx_shared_exponent(fp4, 6.0f, true), 0);
  EXPECT_EQ(mx_shared_exponent(fp4, 7.0f, false), 0);  // 7 then saturates to 6
  EXPECT_EQ(mx_shared_exponent(fp4, 7.0f, true), 1);   // 7 / 2 = 3.5 fits
  EXPECT_EQ(mx_shared_exponent(fp4, 4.0f, false), 0);
  EXPECT_EQ(mx_shared_exponent(fp4, 4.0f, true), 0);  // ceil(log2(4 / 6)) = ceil(-0.58)
  EXPECT_EQ(mx_shared_exponent(fp4, 3.0f, true), -1);
  EXPECT_EQ(mx_shared_exponent(fp4, 3.0f, false), -1);
  EXPECT_EQ(mx_shared_exponent(e4m3, 448.0f, false), 0);
  EXPECT_EQ(mx_shared_exponent(e4m3, 1.0f, false), -8);
  EXPECT_EQ(mx_shared_exponent(e4m3, 1.0f, true), -8);
  EXPECT_EQ(mx_shared_exponent(e4m3, 0.0f, true), -127);
  EXPECT_EQ(mx_shared_exponent(e4m3, 1e-45f, false), -127);  // clamped
}

TEST(Formats, HadamardIsOrthonormal) {
  const uint16_t signs = hadamard_signs(42);
  float a[16], b[16];
  double dot = 0, na = 0;
  for (int i = 0; i < 16; i++) {
    a[i] = float(normal01(1, 0, uint64_t(i)));
    b[i] = float(normal01(1, 1, uint64_t(i)));
    dot += double(a[i]) * b[i];
    na += double(a[i]) * a[i];
  }
  hadamard16(a, 1, signs);
  hadamard16(b, 1, signs);
  double dot2 = 0, na2 = 0;
  for (int i = 0; i < 16; i++) dot2 += double(a[i]) * b[i], na2 += double(a[i]) * a[i];
  EXPECT_NEAR(dot2, dot, 1e-5);
  EXPECT_NEAR(na2, na, 1e-5);
  EXPECT_NE(hadamard_signs(1), hadamard_signs(2));
}

TEST(Formats, RandomBitsInTwoHalvesAreRandomU32) {
  for (uint64_t i = 0; i < 1000; i++) ASSERT_EQ(random_bits(random_base(7, 99), i * 7919), random_u32(7, 99, i * 7919));
}

TEST(Formats, BitsPerValueCountTheScales) {
  QuantSpec mx4{Elem::e2m1, ScaleKind::e8m0, Granularity::block, 1, 32};
  EXPECT_DOUBLE_EQ(mx4.bits_per_value(), 4.25);
  QuantSpec nv4{Elem::e2m1, ScaleKind::e4m3, Granularity::block, 1, 16};
  EXPECT_DOUBLE_EQ(nv4.bits_per_value(), 4.5);
  QuantSpec mx8{Elem::e4m3, ScaleKind::e8m0, Granularity::block, 1, 32};
  EXPECT_DOUBLE_EQ(mx8.bits_per_value(), 8.25);
  EXPECT_EQ(elem_from_name("e3m2"), Elem::e3m2);
  EXPECT_THROW(elem_from_name("e9m9"), std::exception);
}
