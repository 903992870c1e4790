#include "support/support.h"

#include <cmath>
#include <cstdio>

#include "core/rng.h"

namespace meshlm::test {

template <class A>
static ::testing::AssertionResult close_impl(const A* a, const double* b, int64_t n, double atol,
                                             double rtol) {
  double worst = 0;
  int64_t worst_i = -1, bad = 0;
  std::string first;
  for (int64_t i = 0; i < n; i++) {
    const double err = std::fabs(double(a[i]) - b[i]);
    const double ratio = err / (atol + rtol * std::fabs(b[i]));
    if (!(ratio <= 1.0)) {  // also catches NaN
      if (bad < 5) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "  [%lld] got %.9g want %.9g (err %.3g)\n", (long long)i,
                      double(a[i]), b[i], err);
        first += buf;
      }
      bad++;
    }
    if (ratio > worst || std::isnan(ratio)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_i = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lld of %lld elements outside atol %.3g rtol %.3g; worst at %lld (%.3gx tolerance)\n",
                (long long)bad, (long long)n, atol, rtol, (long long)worst_i, worst);
  return ::testing::AssertionFailure() << buf << first;
}

::testing::AssertionResult all_close(const float* a, const double* b, int64_t n, double atol,
                                     double rtol) {
  return close_impl(a, b, n, atol, rtol);
}
::testing::AssertionResult all_close(const double* a, const double* b, int64_t n, double atol,
                                     double rtol) {
  return close_impl(a, b, n, atol, rtol);
}

std::vector<double> random_values(int64_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * uniform01(seed, 99, uint64_t(i));
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace meshlm::test
