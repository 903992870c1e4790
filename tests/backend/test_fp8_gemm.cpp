// The real fp8 operands of every backend (reference, cpu, and cuda where a GPU is usable):
// quantize_fp8's codes bit for bit against the reference's table-driven rounding (both layouts,
// odd shapes for the tiles' edges, non-finite inputs), the same values fake_quantize reads back,
// and gemm_fp8 against a double-precision product of the decoded codes with a bound derived from
// the accumulation's unit roundoff and K (docs/numerics.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/reference/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;

namespace {

// Host bytes in a buffer of the backend for the life of the object, read back by host().
struct DevBytes {
  Backend& be;
  size_t n;
  void* p;
  DevBytes(Backend& b, const void* host, size_t bytes) : be(b), n(std::max<size_t>(bytes, 1)), p(b.allocate(n)) {
    if (host) be.upload(p, host, bytes);
  }
  ~DevBytes() { be.deallocate(p, n); }
  template <class T>
  std::vector<T> host(size_t count) {
    std::vector<T> v(count);
    be.download(v.data(), p, count * sizeof(T));
    return v;
  }
};

// bf16 values over the ranges a scaled fp8 operand meets: ordinary, beyond e4m3's largest,
// below e5m2's smallest subnormal, exact ties, and (with `specials`) inf and NaN.
std::vector<uint16_t> bf16_inputs(int64_t n, uint64_t seed, bool specials) {
  const auto r = random_f32_values(n, seed, -1.0, 1.0);
  std::vector<uint16_t> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    const double mag = std::ldexp(1.0, int(i % 41) - 24);  // 2^-24 .. 2^16
    float v = float(r[size_t(i)] * mag);
    if (i % 53 == 7) v = 0.0f;
    if (specials && i % 97 == 11) v = std::numeric_limits<float>::infinity() * (i % 2 ? -1.0f : 1.0f);
    if (specials && i % 89 == 5) v = std::numeric_limits<float>::quiet_NaN();
    x[size_t(i)] = float_to_bits(DType::bf16, v);
  }
  return x;
}

class Fp8Ops : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    try {
      be = make_backend(GetParam());
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();  // the cuda backend without a usable GPU
    }
  }
  std::unique_ptr<Backend> be;
};

TEST_P(Fp8Ops, QuantizeEqualsTheReferenceBitForBit) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 45}, {64, 96}, {1, 33}})
    for (DType f : {DType::fp8_e4m3, DType::fp8_e5m2})
      for (float scale : {1.0f, 0x1p-4f, 0x1p6f})
        for (bool transpose : {false, true}) {
          const int64_t n = rows * cols;
          const auto x = bf16_inputs(n, uint64_t(rows * 7 + cols), true);
          std::vector<uint8_t> want(static_cast<size_t>(n));
          const float want_amax = reference::quantize_fp8_bf16(f, want.data(), x.data(), rows, cols, scale, transpose);
          // The amax collects into the backend's float: from 0, and from a larger value it keeps.
          const float start[2] = {0.0f, 2 * want_amax + 1};
          DevBytes dx(*be, x.data(), x.size() * 2), dq(*be, nullptr, size_t(n)), damax(*be, start, sizeof start);
          be->quantize_fp8(f, dq.p, dx.p, rows, cols, scale, transpose, static_cast<float*>(damax.p));
          be->quantize_fp8(f, dq.p, dx.p, rows, cols, scale, transpose, static_cast<float*>(damax.p) + 1);
          const auto got = dq.host<uint8_t>(size_t(n));
          const auto amax = damax.host<float>(2);
          const std::string what = dtype_name(f) + std::string(transpose ? " transposed " : " ") +
                                   std::to_string(rows) + "x" + std::to_string(cols) + " scale " + std::to_string(scale);
          EXPECT_EQ(amax[0], want_amax) << what;
          EXPECT_EQ(amax[1], start[1]) << what;
          for (int64_t i = 0; i < n; i++)
            ASSERT_EQ(int(got[size_t(i)]), int(want[size_t(i)])) << what << " element " << i;
        }
}

// q / scale is what fake_quantize reads back (where x is finite): the real and the simulated
// recipe multiply the same values.
TEST_P(Fp8Ops, CodesOverScaleAreTheSimulatedOperand) {
  const int64_t n = 4096;
  const auto x = bf16_inputs(n, 3, false);
  for (DType f : {DType::fp8_e4m3, DType::fp8_e5m2})
    for (float scale : {1.0f, 0x1p-3f, 0x1p5f}) {
      DevBytes dx(*be, x.data(), x.size() * 2), dq(*be, nullptr, size_t(n)), dy(*be, nullptr, size_t(n) * 2);
      be->quantize_fp8(f, dq.p, dx.p, 1, n, scale, false, nullptr);
      be->fake_quantize(f, dy.p, dx.p, n, scale);
      const auto q = dq.host<uint8_t>(size_t(n));
      const auto y = dy.host<uint16_t>(size_t(n));
      for (int64_t i = 0; i < n; i++)
        ASSERT_EQ(bits_to_float(f, q[size_t(i)]) / scale, bits_to_float(DType::bf16, y[size_t(i)]))
            << dtype_name(f) << " scale " << scale << " x " << bits_to_float(DType::bf16, x[size_t(i)]);
    }
}

// Random codes of format f: a bf16 spread over the format's range, quantized by the reference.
std::vector<uint8_t> codes(DType f, int64_t rows, int64_t ld, uint64_t seed) {
  const auto r = random_f32_values(rows * ld, seed, -1.0, 1.0);
  std::vector<uint16_t> x(r.size());
  const double top = f == DType::fp8_e4m3 ? 256.0 : 16384.0;
  for (size_t i = 0; i < r.size(); i++) x[i] = float_to_bits(DType::bf16, float(r[i] * top * std::ldexp(1.0, -int(i % 9))));
  std::vector<uint8_t> q(x.size());
  reference::quantize_fp8_bf16(f, q.data(), x.data(), rows, ld, 1.0f, false);
  return q;
}

struct GemmCase {
  DType fa, fb, c;
  int64_t M, N, K, pad;  // pad: lda = ldb = K + pad, ldc = N + pad
  float alpha, beta;
  bool bias;
};

// C = alpha A B^T + beta C (+ bias) against double: products of fp8 values are exact in fp32;
// the K-term sum is within gamma_K(u_acc) of the sum of |terms|, then alpha (a power of two:
// exact), beta C and the bias add one fp32 rounding each, and a bf16 C one more (u16). u_acc is
// fp32's 2^-24 except on fp8 tensor cores, whose accumulator keeps fewer bits between cuBLASLt's
// promotions to fp32 (about 14 bits reported on Hopper: 2^-13 bounds it).
TEST_P(Fp8Ops, GemmAgainstDouble) {
  const double u_acc = GetParam() == "cuda" && be->supports(Op::gemm, DType::fp8_e4m3) ? 0x1p-13 : kF32Eps;
  const std::vector<GemmCase> cases = {
      {DType::fp8_e4m3, DType::fp8_e4m3, DType::bf16, 64, 48, 96, 0, 0x1p-10f, 0.0f, true},  // forward
      {DType::fp8_e5m2, DType::fp8_e4m3, DType::bf16, 32, 64, 48, 16, 0x1p-12f, 1.0f, false},  // input gradient
      {DType::fp8_e4m3, DType::fp8_e5m2, DType::fp32, 48, 32, 128, 0, 0x1p-14f, 1.0f, false},  // weight gradient
      {DType::fp8_e5m2, DType::fp8_e4m3, DType::fp32, 7, 5, 9, 3, 0.5f, 1.0f, false},  // odd: no tensor-core shape
      {DType::fp8_e4m3, DType::fp8_e4m3, DType::bf16, 5, 11, 13, 1, 1.0f, 0.0f, true}};
  uint64_t seed = 100;
  for (const GemmCase& g : cases) {
    const int64_t lda = g.K + g.pad, ldb = g.K + g.pad, ldc = g.N + g.pad;
    const auto A = codes(g.fa, g.M, lda, ++seed), B = codes(g.fb, g.N, ldb, ++seed);
    const auto c0 = random_f32_values(g.M * ldc, ++seed, -4.0, 4.0), bias = random_f32_values(g.N, ++seed, -2.0, 2.0);
    const size_t esz = dtype_size(g.c);
    std::vector<char> cbytes(c0.size() * esz), bbytes(bias.size() * esz);
    convert_from_f32(g.c, cbytes.data(), to_float(c0).data(), c0.size());
    convert_from_f32(g.c, bbytes.data(), to_float(bias).data(), bias.size());
    DevBytes dA(*be, A.data(), A.size()), dB(*be, B.data(), B.size()), dC(*be, cbytes.data(), cbytes.size()),
        dbias(*be, bbytes.data(), bbytes.size());
    be->gemm_fp8(g.fa, g.fb, g.M, g.N, g.K, g.alpha, dA.p, lda, dB.p, ldb, g.beta, g.c, dC.p, ldc,
                 g.bias ? dbias.p : nullptr);
    const auto got_bytes = dC.host<char>(cbytes.size());
    std::vector<float> got(c0.size()), cin(c0.size()), bin(bias.size());
    convert_to_f32(g.c, got.data(), got_bytes.data(), got.size());
    convert_to_f32(g.c, cin.data(), cbytes.data(), cin.size());
    convert_to_f32(g.c, bin.data(), bbytes.data(), bin.size());
    const double u16 = g.c == DType::bf16 ? 0x1p-8 : 0.0;
    for (int64_t i = 0; i < g.M; i++)
      for (int64_t j = 0; j < ldc; j++) {
        const size_t at = size_t(i * ldc + j);
        if (j >= g.N) {  // the padding is not written
          ASSERT_EQ(got[at], cin[at]) << "padding (" << i << ", " << j << ")";
          continue;
        }
        double sum = 0, mag = 0;
        for (int64_t l = 0; l < g.K; l++) {
          const double t = double(bits_to_float(g.fa, A[size_t(i * lda + l)])) * bits_to_float(g.fb, B[size_t(j * ldb + l)]);
          sum += t;
          mag += std::fabs(t);
        }
        const double extra = (g.beta != 0 ? double(g.beta) * cin[at] : 0.0) + (g.bias ? double(bin[size_t(j)]) : 0.0);
        const double want = double(g.alpha) * sum + extra;
        double bound = double(g.alpha) * mag * gamma(g.K, u_acc) + 2 * kF32Eps * (std::fabs(want) + std::fabs(extra));
        bound += u16 * (std::fabs(want) + bound) + 1e-30;
        ASSERT_LE(std::fabs(double(got[at]) - want), bound)
            << dtype_name(g.fa) << " x " << dtype_name(g.fb) << " -> " << dtype_name(g.c) << " " << g.M << "x" << g.N
            << "x" << g.K << " at (" << i << ", " << j << "): got " << got[at] << " want " << want;
      }
  }
}

TEST_P(Fp8Ops, GemmRefusesTwoE5m2OperandsAndOtherOutputs) {
  std::vector<uint8_t> a(16, 0x38);
  DevBytes dA(*be, a.data(), a.size()), dC(*be, nullptr, 64);
  EXPECT_THROW(be->gemm_fp8(DType::fp8_e5m2, DType::fp8_e5m2, 4, 4, 4, 1.0f, dA.p, 4, dA.p, 4, 0.0f, DType::fp32,
                            dC.p, 4, nullptr),
               Error);
  EXPECT_THROW(be->gemm_fp8(DType::fp8_e4m3, DType::fp8_e4m3, 4, 4, 4, 1.0f, dA.p, 4, dA.p, 4, 0.0f, DType::fp16,
                            dC.p, 4, nullptr),
               Error);
}

INSTANTIATE_TEST_SUITE_P(All, Fp8Ops, ::testing::Values("reference", "cpu"));
// Skipped where no GPU is usable; scripts/gpu_check.sh runs them on a lent one.
INSTANTIATE_TEST_SUITE_P(Cuda, Fp8Ops, ::testing::Values("cuda"));

}  // namespace
