#include "linear_regression.h"

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"

namespace meshlm::examples {

const char* fit_precision_name(FitPrecision p) {
  switch (p) {
    case FitPrecision::fp32: return "fp32";
    case FitPrecision::fp16_pure: return "fp16-pure";
    case FitPrecision::fp16_mixed: return "fp16-mixed";
  }
  return "?";
}

namespace {
float h(float x) { return fp16_to_float(float_to_fp16(x)); }  // round to fp16
float id(float x) { return x; }
}  // namespace

FitResult fit_linear_regression(FitPrecision p, int epochs, double lr, int points, unsigned long long seed) {
  std::vector<double> xs(points), ys(points);
  for (int i = 0; i < points; i++) {
    xs[i] = 2.0 * uniform01(seed, 1, uint64_t(i)) - 1.0;
    ys[i] = 3.0 * xs[i] + 2.0 + 0.3 * normal01(seed, 2, uint64_t(i));
  }
  const bool half = p != FitPrecision::fp32;
  float (*r)(float) = half ? h : id;  // the rounding applied after every operation
  std::vector<float> x(points), y(points);
  for (int i = 0; i < points; i++) {
    x[i] = r(float(xs[i]));
    y[i] = r(float(ys[i]));
  }
  float w = 0, b = 0;  // the weights that are updated (fp32 masters in mixed precision)
  const float lr_c = r(float(lr)), two_over_n = r(2.0f / float(points));
  for (int e = 0; e < epochs; e++) {
    const float wc = r(w), bc = r(b);  // the compute copy
    float gw = 0, gb = 0;              // sums accumulate in fp32, rounded once at the end
    for (int i = 0; i < points; i++) {
      const float err = r(r(r(wc * x[i]) + bc) - y[i]);
      gw += r(err * x[i]);
      gb += err;
    }
    const float dw = r(r(gw) * two_over_n), db = r(r(gb) * two_over_n);
    if (p == FitPrecision::fp16_pure) {  // the update itself in fp16: small steps vanish
      w = h(w - h(lr_c * dw));
      b = h(b - h(lr_c * db));
    } else {  // fp32 update (of fp32 weights, or of the fp32 masters)
      w -= float(lr) * dw;
      b -= float(lr) * db;
    }
  }
  FitResult res{w, b, 0};
  for (int i = 0; i < points; i++) {
    const double d = res.w * xs[i] + res.b - ys[i];
    res.loss += d * d / points;
  }
  return res;
}

}  // namespace meshlm::examples
