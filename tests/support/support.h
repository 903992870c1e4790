// Test helpers: comparisons that print the first few mismatches and the largest error.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::test {

// Max |a - b| / (atol + rtol * |b|) <= 1 over all elements; prints the worst and first few.
::testing::AssertionResult all_close(const float* a, const double* b, int64_t n, double atol,
                                     double rtol);
::testing::AssertionResult all_close(const double* a, const double* b, int64_t n, double atol,
                                     double rtol);
// Deterministic pseudo-random values in [lo, hi).
std::vector<double> random_values(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0);
std::vector<float> to_float(const std::vector<double>& v);
std::vector<double> to_double(const std::vector<float>& v);
// The unit roundoff of fp32 (2^-24).
constexpr double kF32Eps = 0x1p-24;

}  // namespace meshlm::test
