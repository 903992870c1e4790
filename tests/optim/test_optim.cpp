// AdamW over the parameter table (decay on 2-D weights only), the LR schedule, clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "core/error.h"
#include "model/params.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

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
  ParamTable table(c);
  auto be = make_reference_backend();
  Tensor p({table.total()}, DType::fp64), g({table.total()}, DType::fp64);
  for (int64_t i = 0; i < table.total(); i++) {
    p.as<double>()[i] = 1.0;
    g.as<double>()[i] = (i % 2) ? 0.5 : -2.0;
  }
  AdamW opt(table, DType::fp64, {0.9f, 0.95f, 1e-12f, 0.1f});
  const float lr = 0.01f;
  opt.step(*be, p, g, lr, 1.0f, 1);
  for (const auto& e : table.entries()) {
    const double decay = e.shape.size() == 2 ? double(lr) * 0.1 : 0.0;
    for (int64_t i = 0; i < e.numel(); i++) {
      const int64_t k = e.offset + i;
      const double sign = (k % 2) ? 1.0 : -1.0;
      ASSERT_NEAR(p.as<double>()[k], 1.0 - double(lr) * sign - decay, 1e-9) << e.name;
    }
  }
}
