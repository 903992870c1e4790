// The classic fp16 demonstration (the seed's example): fit y = w x + b to 1000 points of
// y = 3x + 2 + N(0, 0.3^2), x uniform in [-1, 1], with mean squared error and full-batch
// gradient descent (lr 0.01, 1000 epochs), in three precisions:
//   fp32        everything in fp32;
//   fp16-pure   the naive recipe: weights, data and every operation rounded to fp16 (sums
//               accumulate in fp32 and are rounded once, as PyTorch's half-precision mean does);
//   fp16-mixed  the same fp16 forward and backward, but the update is applied to fp32 master
//               weights, which are rounded to fp16 only to compute.
// fp16 rounding is meshlm's own round-to-nearest-even conversion (core/dtype.h).
#pragma once
#include <string>

namespace meshlm::examples {

struct FitResult {
  double w = 0, b = 0, loss = 0;  // final weights and MSE (computed in double)
};

enum class FitPrecision { fp32, fp16_pure, fp16_mixed };
const char* fit_precision_name(FitPrecision p);

FitResult fit_linear_regression(FitPrecision p, int epochs = 1000, double lr = 0.01, int points = 1000,
                                unsigned long long seed = 1);

}  // namespace meshlm::examples
