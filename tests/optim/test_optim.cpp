// AdamW over the parameter table (decay on 2-D weights only), the LR schedule, clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "core/error.h"
#include "model/params.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "support/fixtures.h"

using namespace meshlm;

TEST(LrSchedule, WarmupThenCosineToMin) {
  LrSchedule s{"cosine", 1e-3, 1e-4, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);   // (0 + 1) / 10 of the peak
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);   // end of warmup
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);  // cosine starts at the peak
  EXPECT_NEAR(s.at(10 + 99 / 2.0), 0.5 * (1e-3 + 1e-4), 1e-5);
  EXPECT_DOUBLE_EQ(s.at(109), 1e-4);  // last step reaches min_lr
  LrSchedule k{"constant", 2e-3, 0, 0, 50};
  EXPECT_DOUBLE_EQ(k.at(0), 2e-3);
  EXPECT_DOUBLE_EQ(k.at(49), 2e-3);
  EXPECT_THROW((LrSchedule{"linear", 1e-3, 0, 0, 10}.validate()), Error);
}

TEST(Clip, FactorBringsNormToMax) {
  EXPECT_EQ(clip_factor(0.5, 1.0), 1.0f);
  EXPECT_NEAR(clip_factor(4.0, 1.0), 0.25f, 1e-6);
  EXPECT_EQ(clip_factor(4.0, 0.0), 1.0f);  // disabled
  auto be = make_cpu_backend();
  Tensor g({3}, DType::fp32);
  g.as<float>()[0] = 3;
  g.as<float>()[1] = 4;
  EXPECT_DOUBLE_EQ(grad_norm(*be, g), 5.0);
}

TEST(AdamW, FirstStepMovesEachWeightByLrAndDecaysOnlyMatrices) {
  // At step 1 with bias correction, mhat / sqrt(vhat) = sign(g): every parameter with a
  // non-zero gradient moves by exactly lr (plus lr * wd * p for 2-D weights).
  ModelConfig c;
  c.n_layer = 1;
  c.n_head = 1;
  c.n_embd = 4;
  c.max_seq_len = 2;
  c.vocab_size = 3;
  const ParamTable table = test::gpt2_table(c);
  auto be = make_reference_backend();
  Tensor p({table.total()}, DType::fp64), g({table.total()}, DType::fp64);
  for (int64_t i = 0; i < table.total(); i++) {
    p.as<double>()[i] = 1.0;
    g.as<double>()[i] = (i % 2) ? 0.5 : -2.0;
  }
  AdamW opt(*be, table, DType::fp64, {0.9f, 0.95f, 1e-12f, 0.1f});
  const float lr = 0.01f;
  opt.step(p, g, lr, 1.0f, 1);
  for (const auto& e : table.entries()) {
    const double decay = e.shape.size() == 2 ? double(lr) * 0.1 : 0.0;
    for (int64_t i = 0; i < e.numel(); i++) {
      const int64_t k = e.offset + i;
      const double sign = (k % 2) ? 1.0 : -1.0;
      ASSERT_NEAR(p.as<double>()[k], 1.0 - double(lr) * sign - decay, 1e-9) << e.name;
    }
  }
}

// The pure-fp16 recipe's AdamW (the backend op, on both backends) against an independent
// transcription of PyTorch's single-tensor AdamW in which every operation's result is rounded
// to fp16 (by dtype.cpp's format-table conversion, computed in double): bit-identical. And the
// recipe's failure: with eps = 1e-8 (0 in fp16), a weight whose gradient and moments are 0
// becomes NaN (0/0).
class Fp16StorageAdamW : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Backends, Fp16StorageAdamW, ::testing::Values("cpu", "reference"));
TEST_P(Fp16StorageAdamW, RoundsEveryOperationAndFailsOnZeroMoments) {
  auto be = make_backend(GetParam());
  auto h = [](double x) { return double(bits_to_float(DType::fp16, reference_float_to_bits(DType::fp16, float(x)))); };
  const int64_t n = 1000;
  std::vector<float> p(n), g(n), m(n), v(n);
  for (int64_t i = 0; i < n; i++) {
    p[i] = float(h(0.1 * std::sin(double(i))));
    g[i] = float(h(0.01 * std::cos(3.0 * double(i))));
    m[i] = float(h(0.001 * std::sin(7.0 * double(i))));
    v[i] = float(h(1e-5 * (1 + std::sin(5.0 * double(i)))));
  }
  const AdamWArgs a{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3};
  auto want_p = p, want_m = m, want_v = v;
  const double c1 = 1 - std::pow(double(a.beta1), 3.0), c2 = 1 - std::pow(double(a.beta2), 3.0);
  for (int64_t i = 0; i < n; i++) {
    // The kernel's constants are fp32 values; use the same ones.
    const double b1 = a.beta1, b2 = a.beta2, lr = a.lr, eps = a.eps;
    const double step = double(float(lr / float(c1))), c2s = double(std::sqrt(float(c2)));
    const double grad = h(double(g[i]) * double(a.grad_scale));
    double pi = h(double(p[i]) * double(float(1.0f - a.lr * a.weight_decay)));
    const double mi = h(double(m[i]) + double(float(1.0f - a.beta1)) * (grad - double(m[i])));
    double vi = h(double(v[i]) * b2);
    vi = h(vi + double(float(1.0f - a.beta2)) * grad * grad);
    double d = h(std::sqrt(vi));
    d = h(d / c2s);
    d = h(d + eps);
    pi = h(pi - step * (mi / d));
    want_p[i] = float(pi), want_m[i] = float(mi), want_v[i] = float(vi);
    (void)b1, (void)lr;
  }
  be->adamw_update_fp16_storage(p.data(), g.data(), m.data(), v.data(), n, a);
  for (int64_t i = 0; i < n; i++) {
    ASSERT_EQ(p[i], want_p[i]) << i;
    ASSERT_EQ(m[i], want_m[i]) << i;
    ASSERT_EQ(v[i], want_v[i]) << i;
  }
  float zp = 0.5f, zg = 0.0f, zm = 0.0f, zv = 0.0f;
  be->adamw_update_fp16_storage(&zp, &zg, &zm, &zv, 1, a);
  EXPECT_TRUE(std::isnan(zp)) << "eps = 1e-8 rounds to 0 in fp16: 0 / 0";
  AdamWArgs repaired = a;
  repaired.eps = 1e-4f;  // representable in fp16
  zp = 0.5f;
  be->adamw_update_fp16_storage(&zp, &zg, &zm, &zv, 1, repaired);
  EXPECT_TRUE(std::isfinite(zp));
}
