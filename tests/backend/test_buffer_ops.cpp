// The backend's buffer half (backend/ops.inc: memory, conversions, sums, statistics, the fp8
// amax, the vocabulary-parallel cross-entropy's row pieces) on every backend, the guarded ones
// included, against definitions computed here: core/dtype.h's format-table conversion
// (reference_float_to_bits), plain double arithmetic, and closed forms. Buffers go through the
// backend (upload, op, download): the test never reads tensor memory itself, so it runs on the
// guarded backends too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;

namespace {

constexpr double u = kF32Eps;

struct Case {
  std::string backend;
  std::string name() const {
    std::string s = backend;
    for (char& c : s)
      if (c == '-') c = '_';
    return s;
  }
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.backend; }

class BufferOps : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { be = make_backend(GetParam().backend); }
  std::unique_ptr<Backend> be;
  // A backend tensor holding `host`'s values (T is the element type of dt).
  template <class T>
  Tensor put(const std::vector<T>& host, DType dt) {
    Tensor t({int64_t(host.size())}, dt, *be);
    be->upload(t.data(), host.data(), host.size() * sizeof(T));
    return t;
  }
  template <class T>
  std::vector<T> get(const Tensor& t) {
    std::vector<T> host(t.nbytes() / sizeof(T));
    be->download(host.data(), t.data(), t.nbytes());
    return host;
  }
  // n floats spread over many binades, both signs, with the specials at the end.
  static std::vector<float> wide_floats(int64_t n, uint64_t seed) {
    std::vector<float> x;
    for (int64_t i = 0; i < n; i++) {
      const double e = -40.0 + 60.0 * uniform01(seed, 1, uint64_t(i));
      x.push_back(float((i % 2 ? -1 : 1) * std::exp2(e)));
    }
    for (float s : {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65520.0f, 3.4e38f}) x.push_back(s);
    return x;
  }
};

// Allocations are zero-filled and aligned; upload, copy, zero and download move bytes exactly.
TEST_P(BufferOps, MemoryMovesBytesExactly) {
  std::vector<float> host(1000);
  for (size_t i = 0; i < host.size(); i++) host[i] = float(i) * 0.5f - 7.0f;
  Tensor a({1000}, DType::fp32, *be), b({1000}, DType::fp32, *be);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  EXPECT_EQ(get<float>(a), std::vector<float>(1000, 0.0f)) << "zero-filled";
  be->upload(a.data(), host.data(), 4000);
  be->copy(b.data(), a.data(), 4000);
  EXPECT_EQ(get<float>(b), host);
  be->zero(b.as<float>() + 10, 40);  // elements [10, 20)
  const auto z = get<float>(b);
  for (size_t i = 0; i < z.size(); i++) ASSERT_EQ(z[i], i >= 10 && i < 20 ? 0.0f : host[i]) << i;
  be->synchronize();
  Tensor empty({0}, DType::fp32, *be);
  EXPECT_EQ(empty.nbytes(), 0u);
  // Memory given back and taken again is zero-filled again.
  std::vector<Tensor> many;
  for (int k = 0; k < 4; k++) many.emplace_back(Shape{5000}, DType::fp32, *be);
  for (Tensor& t : many) be->upload(t.data(), std::vector<float>(5000, 1.0f).data(), 20000);
  many.clear();
  Tensor again({5000}, DType::fp32, *be);
  EXPECT_EQ(get<float>(again), std::vector<float>(5000, 0.0f));
}

// convert: every 16-bit pattern to fp32 exactly, and fp32 (wide range, specials) to every
// small format with core/dtype.h's format-table rounding; fp32 <-> fp64 exactly.
TEST_P(BufferOps, ConvertRoundsToNearestEvenLikeTheFormatTable) {
  for (DType dt : {DType::bf16, DType::fp16}) {
    std::vector<uint16_t> all(65536);
    for (int i = 0; i < 65536; i++) all[size_t(i)] = uint16_t(i);
    Tensor bits = put(all, dt), f({65536}, DType::fp32, *be);
    be->convert(DType::fp32, f.data(), dt, bits.data(), 65536);
    const auto got = get<float>(f);
    for (int i = 0; i < 65536; i++) {
      const float want = bits_to_float(dt, uint16_t(i));
      ASSERT_TRUE(std::memcmp(&got[size_t(i)], &want, 4) == 0 || (std::isnan(want) && std::isnan(got[size_t(i)])))
          << dtype_name(dt) << " bits " << i;
    }
  }
  const auto x = wide_floats(200000, 3);
  Tensor xs = put(x, DType::fp32);
  for (DType dt : {DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2}) {
    Tensor y({int64_t(x.size())}, dt, *be);
    be->convert(dt, y.data(), DType::fp32, xs.data(), int64_t(x.size()));
    std::vector<uint16_t> got(x.size());
    if (dtype_size(dt) == 2) {
      got = get<uint16_t>(y);
    } else {
      const auto g8 = get<uint8_t>(y);
      got.assign(g8.begin(), g8.end());
    }
    for (size_t i = 0; i < x.size(); i++)
      ASSERT_EQ(got[i], reference_float_to_bits(dt, x[i])) << dtype_name(dt) << " x = " << x[i];
  }
  if (be->supports(Op::matmul, DType::fp64)) {  // the reference backend's double oracle
    Tensor d({int64_t(x.size())}, DType::fp64, *be), back({int64_t(x.size())}, DType::fp32, *be);
    be->convert(DType::fp64, d.data(), DType::fp32, xs.data(), int64_t(x.size()));
    be->convert(DType::fp32, back.data(), DType::fp64, d.data(), int64_t(x.size()));
    EXPECT_EQ(std::memcmp(get<float>(back).data(), x.data(), x.size() * 4), 0);
  }
}

// Stochastic rounding: element i uses the random bits of (seed, stream, index0 + i), so a
// buffer converted in two pieces with their offsets equals the buffer converted at once (the
// layout independence ZeRO-1 relies on), each result is one of the two neighbours, and the
// mean of many roundings is the value (unbiased: within 5 standard errors of a gap).
TEST_P(BufferOps, StochasticRoundingIsKeyedByIndexAndUnbiased) {
  for (DType dt : {DType::bf16, DType::fp16}) {
    const int64_t n = 4096;
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; i++) x[size_t(i)] = float(1.0 + 0.37 * std::sin(double(i)));
    Tensor xs = put(x, DType::fp32), whole({n}, dt, *be), halves({n}, dt, *be);
    be->convert_stochastic(dt, whole.data(), xs.as<float>(), n, 11, 22, 1000);
    be->convert_stochastic(dt, halves.data(), xs.as<float>(), 1000, 11, 22, 1000);
    be->convert_stochastic(dt, halves.as<uint16_t>() + 1000, xs.as<float>() + 1000, n - 1000, 11, 22, 2000);
    const auto a = get<uint16_t>(whole), b = get<uint16_t>(halves);
    EXPECT_EQ(a, b) << dtype_name(dt);
    for (int64_t i = 0; i < n; i++) {
      const float got = bits_to_float(dt, a[size_t(i)]);
      const float gap = std::ldexp(1.0f, std::ilogb(x[size_t(i)]) - float_format(dt).man_bits);
      ASSERT_LT(std::fabs(got - x[size_t(i)]), gap) << "one of the two neighbours of x";
    }
    // One value rounded 20000 times with different indices.
    const int64_t m = 20000;
    const float v = 1.0f + 0.3f * std::ldexp(1.0f, -float_format(dt).man_bits);  // 0.3 of a gap above 1
    Tensor vs = put(std::vector<float>(size_t(m), v), DType::fp32), r({m}, dt, *be);
    be->convert_stochastic(dt, r.data(), vs.as<float>(), m, 5, 6, 0);
    double mean = 0;
    for (uint16_t h : get<uint16_t>(r)) mean += double(bits_to_float(dt, h));
    mean /= double(m);
    const double gap = std::ldexp(1.0, -float_format(dt).man_bits);
    EXPECT_NEAR(mean, double(v), 5 * gap * std::sqrt(0.3 * 0.7 / double(m))) << dtype_name(dt);
  }
}

TEST_P(BufferOps, RoundToFormatAccumulateAndSum) {
  const auto x = wide_floats(50000, 4);
  for (DType dt : {DType::fp16, DType::bf16}) {
    Tensor t = put(x, DType::fp32);
    be->round_to_format(dt, t.as<float>(), int64_t(x.size()));
    const auto got = get<float>(t);
    for (size_t i = 0; i < x.size(); i++)
      ASSERT_EQ(got[i], bits_to_float(dt, reference_float_to_bits(dt, x[i]))) << dtype_name(dt) << " " << x[i];
  }
  // accumulate: one IEEE addition per element, so exactly float(a + b).
  const auto a = to_float(random_f32_values(3001, 5)), b = to_float(random_f32_values(3001, 6));
  Tensor ta = put(a, DType::fp32), tb = put(b, DType::fp32);
  be->accumulate(DType::fp32, ta.data(), tb.data(), 3001);
  const auto s = get<float>(ta);
  for (size_t i = 0; i < a.size(); i++) ASSERT_EQ(s[i], a[i] + b[i]) << i;
  // sum: in index order in double, so exactly the sequential double sum; and on small
  // integers (exact in both) the closed form n (n - 1) / 2.
  double want = 0;
  for (float v : s) want += double(v);
  EXPECT_EQ(be->sum(DType::fp32, ta.data(), 3001), want);
  std::vector<float> ints(10000);
  for (size_t i = 0; i < ints.size(); i++) ints[i] = float(i);
  EXPECT_EQ(be->sum(DType::fp32, put(ints, DType::fp32).data(), 10000), 10000.0 * 9999.0 / 2.0);
}

// tensor_stats against a classification of each value written here from the format's limits.
TEST_P(BufferOps, TensorStatsCountEachClass) {
  const auto x = wide_floats(30000, 7);
  Tensor t = put(x, DType::fp32);
  for (DType fmt : {DType::fp32, DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2}) {
    const double max_finite = format_range(fmt).max_finite, min_normal = format_range(fmt).min_normal,
                 min_sub = format_range(fmt).min_subnormal;
    TensorStats want;
    want.n = int64_t(x.size());
    for (float v : x) {
      const double a = std::fabs(double(v));
      if (!(a <= max_finite)) want.overflow++;
      else if (a == 0) want.zero++;
      else if (a < min_sub / 2) want.underflow++;
      else if (a < min_normal) want.subnormal++;
      if (a <= max_finite) want.amax = std::max(want.amax, a);
    }
    const TensorStats got = be->tensor_stats(fmt, DType::fp32, t.data(), int64_t(x.size()));
    EXPECT_EQ(got.n, want.n);
    EXPECT_EQ(got.zero, want.zero) << dtype_name(fmt);
    EXPECT_EQ(got.underflow, want.underflow) << dtype_name(fmt);
    EXPECT_EQ(got.subnormal, want.subnormal) << dtype_name(fmt);
    EXPECT_EQ(got.overflow, want.overflow) << dtype_name(fmt);
    EXPECT_EQ(got.amax, want.amax) << dtype_name(fmt);
  }
}

// amax over the finite values of bf16 data (inf and NaN skipped).
TEST_P(BufferOps, AmaxSkipsNonFinite) {
  std::vector<uint16_t> x;
  float want = 0;
  for (int i = 0; i < 1000; i++) {
    const float v = float(std::sin(double(i)) * std::exp2(double(i % 40) - 20));
    x.push_back(float_to_bits(DType::bf16, v));
    want = std::max(want, std::fabs(bits_to_float(DType::bf16, x.back())));
  }
  x.push_back(float_to_bits(DType::bf16, INFINITY));
  x.push_back(float_to_bits(DType::bf16, NAN));
  EXPECT_EQ(be->amax(DType::bf16, put(x, DType::bf16).data(), int64_t(x.size())), want);
}

// The vocabulary-parallel cross-entropy's row pieces on a rank holding columns [v0, v0 + Vl)
// of fp32 logits, against double arithmetic: sumexp = exp(lse - max) within (|lse - max| + 2) u
// relative (the argument's rounding, then expf's <= 1 ulp); the local targets and the target's
// logit exact (an index and a copy); then lse = max + log(sumexp) within u |lse| + 2u
// (log's ulp plus the addition), and the loss within u |loss| + that.
TEST_P(BufferOps, CrossEntropyRowPieces) {
  const int64_t N = 64, Vl = 40, v0 = 40;
  std::vector<float> logits(size_t(N * Vl)), lse(N), mx(N);
  std::vector<int32_t> targets(N);
  for (int64_t n = 0; n < N; n++) {
    for (int64_t v = 0; v < Vl; v++) logits[size_t(n * Vl + v)] = float(4 * std::sin(double(n * 7 + v)));
    lse[size_t(n)] = n % 9 == 0 ? -INFINITY : float(2 + std::cos(double(n)));  // -inf: no columns
    mx[size_t(n)] = n % 9 == 0 ? 1.5f : lse[size_t(n)] + float(n % 3);
    targets[size_t(n)] = int32_t((n * 13) % 120);
  }
  Tensor tl = put(logits, DType::fp32), tlse = put(lse, DType::fp32), tmx = put(mx, DType::fp32);
  Tensor sumexp({N}, DType::fp32, *be), xt({N}, DType::fp32, *be), loc({N}, DType::fp32, *be);
  Buffer tt(N * 4, *be);
  be->upload(tt.data(), targets.data(), N * 4);
  auto* local = static_cast<int32_t*>(loc.data());  // int32 in a 4-byte tensor
  be->crossentropy_partials(DType::fp32, sumexp.data(), xt.data(), local, tlse.data(), tmx.data(), tl.data(),
                            tt.as<int32_t>(), N, v0, Vl);
  const auto s = get<float>(sumexp), x = get<float>(xt);
  std::vector<int32_t> lt(N);
  be->download(lt.data(), local, N * 4);
  for (int64_t n = 0; n < N; n++) {
    const int64_t t = targets[size_t(n)] - v0;
    const bool here = t >= 0 && t < Vl;
    EXPECT_EQ(lt[size_t(n)], here ? int32_t(t) : -1) << n;
    EXPECT_EQ(x[size_t(n)], here ? logits[size_t(n * Vl + t)] : 0.0f) << n;
    if (n % 9 == 0) {
      EXPECT_EQ(s[size_t(n)], 0.0f) << "exp(-inf) is 0";
      continue;
    }
    const double d = double(lse[size_t(n)]) - double(mx[size_t(n)]), want = std::exp(d);
    EXPECT_NEAR(s[size_t(n)], want, want * (std::fabs(d) + 2) * u) << n;
  }
  std::vector<float> sums(N), tls(N);
  for (int64_t n = 0; n < N; n++) {
    sums[size_t(n)] = 0.25f + float(n % 5);
    tls[size_t(n)] = float(std::sin(double(n)));
  }
  Tensor ts = put(sums, DType::fp32), tx = put(tls, DType::fp32), out_lse({N}, DType::fp32, *be),
         out_loss({N}, DType::fp32, *be);
  be->crossentropy_combine(DType::fp32, out_lse.data(), out_loss.data(), tmx.data(), ts.data(), tx.data(), N);
  const auto gl = get<float>(out_lse), gloss = get<float>(out_loss);
  for (int64_t n = 0; n < N; n++) {
    const double l = double(mx[size_t(n)]) + std::log(double(sums[size_t(n)]));
    const double e = u * std::fabs(l) + 2 * u;
    EXPECT_NEAR(gl[size_t(n)], l, e) << n;
    const double loss = l - double(tls[size_t(n)]);
    EXPECT_NEAR(gloss[size_t(n)], loss, e + u * std::fabs(loss)) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(All, BufferOps,
                         ::testing::Values(Case{"cpu"}, Case{"reference"}, Case{"cpu-guarded"},
                                           Case{"reference-guarded"}),
                         [](const auto& info) { return info.param.name(); });

}  // namespace
