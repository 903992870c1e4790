#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"

using namespace meshlm;

TEST(Tensor, ShapeDtypeAndAlignment) {
  Tensor t({3, 5}, DType::bf16);
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(t.nbytes(), 30u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  for (int i = 0; i < 15; i++) EXPECT_EQ(t.as<uint16_t>()[i], 0);
  EXPECT_EQ(shape_str(t.shape()), "(3, 5)");
  EXPECT_THROW(Tensor({-1}, DType::fp32), Error);
}

TEST(Rng, CounterBasedAndReproducible) {
  EXPECT_EQ(normal01(1, 2, 3), normal01(1, 2, 3));
  EXPECT_NE(normal01(1, 2, 3), normal01(1, 2, 4));
  EXPECT_NE(normal01(1, 2, 3), normal01(2, 2, 3));
  // Moments of 200k normals: mean 0 +- 5/sqrt(n), variance 1 +- 5*sqrt(2/n).
  const int n = 200000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; i++) {
    double x = normal01(42, 7, i);
    s += x;
    s2 += x * x;
  }
  EXPECT_NEAR(s / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5.0 * std::sqrt(2.0 / n));
}
