// The seed's fp16 example: fp32 and fp16 mixed precision recover (3, 2) within 0.05; naive
// fp16 stalls short of it (updates below half an fp16 ulp of w vanish), reported, not hidden.
#include <gtest/gtest.h>

#include <cmath>

#include "linear_regression.h"

using namespace meshlm::examples;

TEST(LinearRegression, Fp32AndMixedRecoverTheLine) {
  for (FitPrecision p : {FitPrecision::fp32, FitPrecision::fp16_mixed}) {
    const FitResult r = fit_linear_regression(p);
    EXPECT_NEAR(r.w, 3.0, 0.05) << fit_precision_name(p);
    EXPECT_NEAR(r.b, 2.0, 0.05) << fit_precision_name(p);
  }
}

TEST(LinearRegression, PureFp16StallsWhereUpdatesFallBelowHalfAnUlp) {
  const FitResult pure = fit_linear_regression(FitPrecision::fp16_pure);
  const FitResult full = fit_linear_regression(FitPrecision::fp32);
  std::printf("fp16-pure: w %.4f b %.4f (fp32: w %.4f b %.4f)\n", pure.w, pure.b, full.w, full.b);
  ASSERT_TRUE(std::isfinite(pure.w) && std::isfinite(pure.b));
  // The stall is predicted, not just observed: |w - w*| stops near 0.15 (see main.cpp's text).
  EXPECT_GT(std::fabs(pure.w - full.w), 0.05);
  EXPECT_GT(pure.loss, full.loss);
}
