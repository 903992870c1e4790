// fp8 delayed scaling: quantize/dequantize error bounds derived from the format, saturation,
// the amax history, and a state round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng.h"
#include "backend/backend.h"
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

// The simulated GEMM operand (the backend's fake_quantize, cpu and reference) against the
// quantize/dequantize path of precision/fp8: for bf16 inputs spread over many binades, it equals bf16(dequantize_fp8(quantize_fp8(x))) (which rounds
// through dtype.cpp's format-table conversion) wherever the value stays in range, saturates
// to +-max/scale beyond it (both formats: satfinite), keeps NaN, and returns the amax.
TEST(Fp8, FakeQuantizeMatchesQuantizeThenDequantize) {
  for (const char* backend : {"cpu", "reference"})
  for (DType fmt : {DType::fp8_e4m3, DType::fp8_e5m2}) {
    const double max_finite = float_format(fmt).max_finite;
    for (float scale : {1.0f, 64.0f, 0.0078125f}) {  // powers of two
      std::vector<float> xs;
      for (int i = 0; i < 20000; i++) {  // magnitudes from 2^-30 to 2^20, both signs
        const double e = -30.0 + 50.0 * uniform01(3, uint64_t(fmt), uint64_t(i));
        xs.push_back(float((i % 2 ? -1 : 1) * std::exp2(e)));
      }
      xs.push_back(0.0f);
      std::vector<uint16_t> x(xs.size()), y(xs.size());
      convert_from_f32(DType::bf16, x.data(), xs.data(), xs.size());
      convert_to_f32(DType::bf16, xs.data(), x.data(), xs.size());  // the bf16 values
      const float amax = make_backend(backend)->fake_quantize(fmt, y.data(), x.data(), int64_t(x.size()), scale);
      float want_amax = 0;
      for (size_t i = 0; i < xs.size(); i++) {
        want_amax = std::max(want_amax, std::fabs(xs[i]));
        uint8_t q;
        float back;
        quantize_fp8(fmt, &xs[i], &q, 1, scale);
        dequantize_fp8(fmt, &q, &back, 1, scale);
        if (std::fabs(double(xs[i]) * scale) > max_finite)  // beyond the range: satfinite
          back = std::copysign(float(max_finite / scale), xs[i]);
        ASSERT_EQ(bf16_to_float(y[i]), back) << backend << " " << dtype_name(fmt) << " x=" << xs[i] << " scale " << scale;
        ASSERT_EQ(float_to_bf16(back), y[i]) << "the fp8 value must be exact in bf16";
      }
      EXPECT_EQ(amax, want_amax);
    }
  }
  const uint16_t nan = float_to_bf16(NAN);
  uint16_t out;
  for (const char* backend : {"cpu", "reference"}) {
    make_backend(backend)->fake_quantize(DType::fp8_e4m3, &out, &nan, 1, 1.0f);
    EXPECT_TRUE(std::isnan(bf16_to_float(out))) << backend;
  }
}

// Scales are used as powers of two (at most one binade below the amax-derived scale), and the
// first step, with no history, derives its scale from the tensor at hand.
TEST(Fp8, PowerOfTwoAndJustInTimeScales) {
  Fp8Scale s(DType::fp8_e4m3);
  EXPECT_FALSE(s.has_history());
  EXPECT_EQ(s.pow2_scale_for(3.0f), 128.0f);  // 448 / 3 = 149.3 -> 128
  EXPECT_EQ(s.pow2_scale_for(0.0f), s.pow2_scale());
  s.record_amax(3.0f);
  EXPECT_TRUE(s.has_history());
  EXPECT_FLOAT_EQ(s.scale(), 448.0f / 3.0f);
  EXPECT_EQ(s.pow2_scale(), 128.0f);
  const std::vector<uint16_t> x = {float_to_bf16(-5.0f), float_to_bf16(0.25f)};
  EXPECT_EQ(make_cpu_backend()->amax(DType::bf16, x.data(), 2), 5.0f);
  EXPECT_EQ(make_reference_backend()->amax(DType::bf16, x.data(), 2), 5.0f);
}
