// fp8 delayed scaling: quantize/dequantize error bounds derived from the format, saturation,
// the amax history, and a state round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "precision/fp8.h"

using namespace meshlm;

// With scale s, a value x maps to x s. In the normal range RNE has relative error <= 2^-(m+1)
// (m mantissa bits: e4m3 2^-4, e5m2 2^-3); below it the spacing is the subnormal step
// 2^(1 - bias - m), so the absolute error is <= half of that, divided by s. The product x s and
// the final division by s add two fp32 roundings (2^-24 each).
TEST(Fp8, QuantizeDequantizeWithinTheFormatsBound) {
  for (DType fmt : {DType::fp8_e4m3, DType::fp8_e5m2}) {
    const FloatFormat f = float_format(fmt);
    const double rel = std::ldexp(1.0, -(f.man_bits + 1)) + 3 * 0x1p-24;
    const double sub_half = std::ldexp(1.0, 1 - f.bias - f.man_bits) / 2;
    std::vector<float> x(10000), back(x.size());
    for (size_t i = 0; i < x.size(); i++)  // magnitudes over 8 decades
      x[i] = float((uniform01(5, 1, i) - 0.5) * std::pow(10.0, 4 * uniform01(5, 2, i) - 6));
    Fp8Scale sc(fmt);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    sc.record_amax(amax);
    std::vector<uint8_t> q(x.size());
    EXPECT_EQ(quantize_fp8(fmt, x.data(), q.data(), int64_t(x.size()), sc.scale()), amax);
    dequantize_fp8(fmt, q.data(), back.data(), int64_t(x.size()), sc.scale());
    for (size_t i = 0; i < x.size(); i++) {
      const double bound = std::max(rel * std::fabs(x[i]), sub_half / sc.scale()) * (1 + 1e-6);
      ASSERT_LE(std::fabs(double(back[i]) - x[i]), bound) << dtype_name(fmt) << " x=" << x[i];
    }
    // The largest value lands exactly on fp8's maximum.
    EXPECT_FLOAT_EQ(amax * sc.scale(), float(f.max_finite));
  }
}

TEST(Fp8, StaleScaleSaturatesE4m3AndOverflowsE5m2) {
  Fp8Scale a(DType::fp8_e4m3), b(DType::fp8_e5m2);
  a.record_amax(1.0f);
  b.record_amax(1.0f);
  const float big = 4.0f;  // 4x above what the scale was set for
  uint8_t q;
  float back;
  quantize_fp8(DType::fp8_e4m3, &big, &q, 1, a.scale());
  dequantize_fp8(DType::fp8_e4m3, &q, &back, 1, a.scale());
  EXPECT_FLOAT_EQ(back, 1.0f);  // saturated at 448 / scale = 1
  quantize_fp8(DType::fp8_e5m2, &big, &q, 1, b.scale());
  dequantize_fp8(DType::fp8_e5m2, &q, &back, 1, b.scale());
  EXPECT_TRUE(std::isinf(back));
}

TEST(Fp8, AmaxHistoryMarginAndState) {
  Fp8ScalingConfig cfg;
  cfg.history = 3;
  cfg.margin = 1;
  Fp8Scale s(DType::fp8_e4m3, cfg);
  EXPECT_EQ(s.scale(), 1.0f);
  s.record_amax(0.0f);  // all-zero tensor: scale unchanged
  EXPECT_EQ(s.scale(), 1.0f);
  s.record_amax(8.0f);
  EXPECT_FLOAT_EQ(s.scale(), 448.0f / 8.0f / 2.0f);
  s.record_amax(2.0f);
  s.record_amax(1.0f);  // window {8, 2, 1}: max is still 8
  EXPECT_FLOAT_EQ(s.scale(), 448.0f / 8.0f / 2.0f);
  s.record_amax(1.0f);  // window {2, 1, 1}
  EXPECT_FLOAT_EQ(s.scale(), 448.0f / 2.0f / 2.0f);
  Fp8Scale t(DType::fp8_e4m3, cfg);
  t.from_json(s.to_json());
  s.record_amax(4.0f);
  t.record_amax(4.0f);
  EXPECT_EQ(s.scale(), t.scale());
  cfg.algorithm = "most_recent";
  Fp8Scale r(DType::fp8_e5m2, cfg);
  r.record_amax(8.0f);
  r.record_amax(2.0f);
  EXPECT_FLOAT_EQ(r.scale(), 57344.0f / 2.0f / 2.0f);
  cfg.algorithm = "mean";
  EXPECT_THROW(Fp8Scale(DType::fp8_e4m3, cfg), Error);
  EXPECT_THROW(Fp8Scale(DType::bf16), Error);
  EXPECT_THROW(t.from_json(r.to_json()), Error);  // e5m2 state into an e4m3 scale
}
