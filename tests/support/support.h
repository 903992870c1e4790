// Test helpers: bounds derived from the dtype's unit roundoff and the reduction length, and
// comparisons that print the first few mismatches and the largest error.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::test {

constexpr double kF32Eps = 0x1p-24;  // unit roundoff u of fp32 (round to nearest)

// gamma_k = k u / (1 - k u): the classic bound on the relative error of a k-term sum or dot
// product in any order (Higham, Accuracy and Stability, 3.1), relative to the sum of |terms|.
inline double gamma(int64_t k, double u = kF32Eps) { return double(k) * u / (1.0 - double(k) * u); }

// |got[i] - want[i]| <= bound[i] for all i; on failure reports the count, the worst
// (as a multiple of its bound) and the first few mismatches.
::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& want,
                                  const std::vector<double>& bound);
::testing::AssertionResult within(const std::vector<double>& got, const std::vector<double>& want,
                                  const std::vector<double>& bound);
// Max |a - b| / (atol + rtol * |b|) <= 1 over all elements.
::testing::AssertionResult all_close(const float* a, const double* b, int64_t n, double atol,
                                     double rtol);
::testing::AssertionResult all_close(const double* a, const double* b, int64_t n, double atol,
                                     double rtol);
// Deterministic pseudo-random values in [lo, hi).
std::vector<double> random_values(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0);
// Random values already rounded to fp32, as doubles (so fp32 kernels and the fp64 oracle see
// identical inputs).
std::vector<double> random_f32_values(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0);
std::vector<float> to_float(const std::vector<double>& v);
std::vector<double> to_double(const std::vector<float>& v);
std::vector<double> abs_values(const std::vector<double>& v);

}  // namespace meshlm::test
