// The loss scaler's state machine: growth after the interval, backoff with hysteresis, the
// minimum that stops training, and a checkpoint round trip.
#include <gtest/gtest.h>

#include "core/error.h"
#include "precision/loss_scaler.h"

using namespace meshlm;

TEST(LossScaler, DefaultsAndGrowth) {
  LossScaler s;
  EXPECT_EQ(s.scale(), 65536.0);
  for (int i = 0; i < 1999; i++) ASSERT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_TRUE(s.update(false));  // the 2000th clean step doubles it
  EXPECT_EQ(s.scale(), 131072.0);
}

TEST(LossScaler, HysteresisDelaysBackoffAndOverflowsResetGrowth) {
  LossScaler s({1024.0, 2.0, 0.5, 4, 2, 1.0});
  EXPECT_FALSE(s.update(true));  // skipped; first overflow: no backoff yet (hysteresis 2)
  EXPECT_EQ(s.scale(), 1024.0);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));  // second overflow since the last change: halve
  EXPECT_EQ(s.scale(), 512.0);
  EXPECT_EQ(s.skipped_steps(), 2);
  // The overflow restarted the clean run: growth needs 4 fresh clean steps.
  for (int i = 0; i < 3; i++) s.update(false);
  EXPECT_EQ(s.scale(), 512.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024.0);
  EXPECT_FALSE(s.update(true));  // after a growth the hysteresis count starts again
  EXPECT_EQ(s.scale(), 1024.0);
}

TEST(LossScaler, MinimumStopsTrainingWithAClearError) {
  LossScaler s({4.0, 2.0, 0.5, 100, 1, 1.0});
  EXPECT_FALSE(s.update(true));
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_FALSE(s.update(true));
  EXPECT_EQ(s.scale(), 1.0);
  try {
    s.update(true);
    FAIL() << "an overflow at the minimum scale must stop training";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below the minimum"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LossScaler({1.0, 0.5, 0.5, 10, 1, 1.0}), Error);  // growth <= 1
}

TEST(LossScaler, StateRoundTripsThroughJson) {
  LossScaler a({256.0, 2.0, 0.5, 3, 2, 1.0});
  a.update(false);
  a.update(true);
  LossScaler b({256.0, 2.0, 0.5, 3, 2, 1.0});
  b.from_json(a.to_json());
  // Same future: one more overflow halves both (hysteresis 2), then 3 clean steps double both.
  for (bool inf : {true, false, false, false}) {
    EXPECT_EQ(a.update(inf), b.update(inf));
    EXPECT_EQ(a.scale(), b.scale());
  }
  EXPECT_EQ(a.scale(), 256.0);
  EXPECT_THROW(b.from_json(nlohmann::json{{"scale", 1.0}}), Error);
}
