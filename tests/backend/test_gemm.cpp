// GEMM through each backend: closed forms on small integers (every product and partial sum is
// an exactly representable integer, so any correct summation order gives the exact answer and
// the result must match bit for bit), all four transpose combinations, leading dimensions
// larger than the row, alpha/beta, and the primitive cache.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/gemm_onednn.h"

using namespace meshlm;

namespace {

struct GemmCase {
  std::string backend;
  bool ta, tb;
  int64_t M, N, K, pad;  // pad: extra columns in each leading dimension
};
void PrintTo(const GemmCase& c, std::ostream* os) {
  *os << c.backend << (c.ta ? " A^T" : " A") << (c.tb ? " B^T" : " B") << " M" << c.M << " N" << c.N
      << " K" << c.K << " pad" << c.pad;
}

class Gemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(Gemm, SmallIntegersAreExact) {
  const auto& c = GetParam();
  auto be = make_backend(c.backend);
  // Stored shapes: A is (M, K) or (K, M) when transposed; B is (K, N) or (N, K).
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  std::vector<float> A(a_rows * lda, 1e30f), B(b_rows * ldb, 1e30f), C(c.M * ldc);
  auto a_at = [&](int64_t i, int64_t k) -> float& { return c.ta ? A[k * lda + i] : A[i * lda + k]; };
  auto b_at = [&](int64_t k, int64_t j) -> float& { return c.tb ? B[j * ldb + k] : B[k * ldb + j]; };
  for (int64_t i = 0; i < c.M; i++)
    for (int64_t k = 0; k < c.K; k++) a_at(i, k) = float((i * 3 + k * 5) % 7 - 3);
  for (int64_t k = 0; k < c.K; k++)
    for (int64_t j = 0; j < c.N; j++) b_at(k, j) = float((k * 2 + j * 3) % 5 - 2);
  for (int64_t i = 0; i < c.M; i++)
    for (int64_t j = 0; j < c.N; j++) C[i * ldc + j] = float(i - j);
  // C = 2 A B + 3 C: integers below 2^24 in magnitude, so exact in fp32.
  be->gemm(DType::fp32, c.ta, c.tb, c.M, c.N, c.K, 2.0f, A.data(), lda, B.data(), ldb, 3.0f,
           C.data(), ldc);
  for (int64_t i = 0; i < c.M; i++)
    for (int64_t j = 0; j < c.N; j++) {
      int64_t acc = 0;
      for (int64_t k = 0; k < c.K; k++) acc += int64_t(a_at(i, k)) * int64_t(b_at(k, j));
      ASSERT_EQ(C[i * ldc + j], float(2 * acc + 3 * (i - j))) << "C[" << i << "," << j << "]";
    }
}

INSTANTIATE_TEST_SUITE_P(
    All, Gemm,
    ::testing::Values(GemmCase{"cpu", false, false, 17, 33, 65, 0}, GemmCase{"cpu", true, false, 17, 33, 65, 3},
                      GemmCase{"cpu", false, true, 64, 48, 128, 1}, GemmCase{"cpu", true, true, 5, 7, 300, 2},
                      GemmCase{"reference", false, false, 9, 11, 13, 0},
                      GemmCase{"reference", true, true, 9, 11, 13, 2}));

TEST(OneDnnGemm, CachesOnePrimitivePerShape) {
  OneDnnGemm g;
  std::vector<float> a(64 * 64, 1.0f), b(64 * 64, 1.0f), c(64 * 64);
  GemmDesc d{DType::fp32, false, false, 64, 64, 64, 64, 64, 64, 1.0f, 0.0f, false, GemmRoute::primitive};
  for (int i = 0; i < 3; i++) g.run(d, a.data(), b.data(), c.data());
  EXPECT_EQ(g.cached_primitives(), 1u);
  EXPECT_EQ(c[0], 64.0f);
  d.beta = 1.0f;
  g.run(d, a.data(), b.data(), c.data());
  EXPECT_EQ(g.cached_primitives(), 2u);
  EXPECT_EQ(c[0], 128.0f);
}

TEST(OneDnnGemm, Bf16OperandsAccumulateInFp32) {
  // bf16 holds integers up to 256 exactly; 300 products of 1 * 1 sum to 300, which bf16
  // could not hold but the fp32 accumulator does.
  OneDnnGemm g;
  const int64_t K = 300;
  std::vector<uint16_t> a(K, float_to_bf16(1.0f)), b(K, float_to_bf16(1.0f));
  float c = 0;
  g.run({DType::bf16, false, false, 1, 1, K, K, 1, 1, 1.0f, 0.0f, false}, a.data(), b.data(), &c);
  EXPECT_EQ(c, 300.0f);
}

}  // namespace

namespace {

// Both routes (sgemm with the bias written first, and the primitive with the bias fused) give
// the exact answer on small integers, with and without a bias.
TEST(OneDnnGemm, BothRoutesAgreeExactlyOnIntegers) {
  const int64_t M = 19, N = 45, K = 70;
  std::vector<float> a(M * K), b(K * N), bias(N);
  for (int64_t i = 0; i < M * K; i++) a[i] = float(i % 5 - 2);
  for (int64_t i = 0; i < K * N; i++) b[i] = float(i % 7 - 3);
  for (int64_t j = 0; j < N; j++) bias[j] = float(j % 3);
  for (bool with_bias : {false, true}) {
    std::vector<float> c1(M * N), c2(M * N);
    OneDnnGemm g;
    g.run({DType::fp32, false, false, M, N, K, K, N, N, 1.0f, 0.0f, with_bias, GemmRoute::sgemm}, a.data(),
          b.data(), c1.data(), bias.data());
    g.run({DType::fp32, false, false, M, N, K, K, N, N, 1.0f, 0.0f, with_bias, GemmRoute::primitive},
          a.data(), b.data(), c2.data(), bias.data());
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double want = with_bias ? bias[j] : 0.0;
        for (int64_t k = 0; k < K; k++) want += double(a[i * K + k]) * b[k * N + j];
        ASSERT_EQ(c1[i * N + j], float(want)) << "sgemm " << i << "," << j;
        ASSERT_EQ(c2[i * N + j], float(want)) << "primitive " << i << "," << j;
      }
  }
}

}  // namespace

namespace {

// bf16 operands through the cpu backend against double precision: a product of two bf16
// values (8-bit significands) is exact in fp32, so the only error is the fp32 sum of K terms:
// gamma_K times the sum of |a b|.
TEST(Gemm, Bf16OperandsAgainstDouble) {
  auto be = make_cpu_backend();
  ASSERT_TRUE(be->supports(Op::gemm, DType::bf16));
  EXPECT_FALSE(be->supports(Op::adamw, DType::bf16));  // the optimizer runs on fp32 masters
  for (bool tb : {false, true}) {
    const int64_t M = 37, N = 53, K = 300;
    std::vector<uint16_t> a(M * K), b(K * N);
    std::vector<double> ad(M * K), bd(K * N);
    for (int64_t i = 0; i < M * K; i++) {
      a[i] = float_to_bf16(float(std::sin(0.37 * double(i))));
      ad[i] = bf16_to_float(a[i]);
    }
    for (int64_t i = 0; i < K * N; i++) {
      b[i] = float_to_bf16(float(std::cos(0.11 * double(i)) * 3.0));
      bd[i] = bf16_to_float(b[i]);
    }
    std::vector<float> c(M * N);
    be->gemm(DType::bf16, false, tb, M, N, K, 1.0f, a.data(), K, b.data(), tb ? K : N, 0.0f, c.data(), N);
    const double u = 0x1p-24, gamma = K * u / (1 - K * u);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double want = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          const double bv = tb ? bd[j * K + k] : bd[k * N + j];
          want += ad[i * K + k] * bv;
          mag += std::fabs(ad[i * K + k] * bv);
        }
        ASSERT_LE(std::fabs(c[i * N + j] - want), gamma * mag) << i << "," << j << " tb " << tb;
      }
  }
}

}  // namespace
