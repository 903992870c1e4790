// quantize_blocks (ops.inc, core/formats.h): the cpu kernel bit-identical to the reference for
// every format, scale, granularity and recipe option; block-scale selection by hand; the
// read-back error bound of each format; saturation counts; NaN and inf handling; 2-D tiles the
// same for either axis; the Hadamard transform leaving a product's reduction unchanged; and
// stochastic rounding unbiased.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"

using namespace meshlm;

namespace {

struct Result {
  std::vector<float> y;
  TensorStats s;
};

Result quantize(Backend& be, const QuantSpec& q, const std::vector<float>& x, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  std::vector<uint16_t> xb(static_cast<size_t>(n)), yb(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) xb[size_t(i)] = float_to_bf16(x[size_t(i)]);
  Tensor tx({n}, DType::bf16, be), ty({n}, DType::bf16, be);
  be.upload(tx.data(), xb.data(), xb.size() * 2);
  Result r;
  r.s = be.quantize_blocks(q, ty.data(), tx.data(), rows, cols);
  be.download(yb.data(), ty.data(), yb.size() * 2);
  for (uint16_t b : yb) r.y.push_back(bf16_to_float(b));
  return r;
}

// Values over 6 decades with a few outliers 100x larger: the case block scaling is for.
std::vector<float> spread_values(int64_t n, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    const double mag = std::pow(10.0, 6 * uniform01(seed, 1, uint64_t(i)) - 4);
    x[size_t(i)] = bf16_to_float(float_to_bf16(float((uniform01(seed, 2, uint64_t(i)) - 0.5) * mag)));
    if (i % 97 == 5) x[size_t(i)] *= 100;
  }
  return x;
}

QuantSpec spec(Elem e, ScaleKind s, Granularity g, int axis = 1, int64_t block = 32) {
  QuantSpec q;
  q.elem = e, q.scale = s, q.granularity = g, q.axis = axis, q.block = block;
  return q;
}

// Every mode the ladder uses (and each recipe option), on both axes.
std::vector<QuantSpec> all_specs() {
  std::vector<QuantSpec> out;
  for (int axis : {0, 1}) {
    for (Elem e : {Elem::e4m3, Elem::e5m2, Elem::e2m3, Elem::e3m2, Elem::e2m1})
      for (bool up : {true, false}) {
        QuantSpec q = spec(e, ScaleKind::e8m0, Granularity::block, axis, 32);
        q.round_up = up;
        out.push_back(q);
      }
    out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16));  // NVFP4
    out.push_back(spec(Elem::e4m3, ScaleKind::pow2, Granularity::tensor, axis));     // fp8 current
    out.push_back(spec(Elem::e5m2, ScaleKind::pow2, Granularity::vector, axis));     // fp8 per row
    out.push_back(spec(Elem::e4m3, ScaleKind::given, Granularity::tensor, axis));
    out.back().given = 64.0f;
    QuantSpec h = spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16);
    h.hadamard = true, h.hadamard_seed = 9;
    out.push_back(h);
    QuantSpec sr = spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16);
    sr.stochastic = true, sr.seed = 3, sr.stream = 17;
    out.push_back(sr);
  }
  out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::tile, 1, 16));  // 2-D weights
  out.push_back(spec(Elem::e4m3, ScaleKind::e8m0, Granularity::tile, 0, 32));
  return out;
}

}  // namespace

// Every spec and shape on `fast` against the reference: outputs bit for bit, the same statistics.
static void expect_backend_is_the_reference(Backend& fast) {
  auto ref = make_backend("reference");
  for (const QuantSpec& q : all_specs())
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{48, 80}, {37, 70}, {64, 1}}) {
      if (q.hadamard && (q.axis == 1 ? cols : rows) % 16 != 0) continue;
      const std::vector<float> x = spread_values(rows * cols, uint64_t(rows + cols));
      const Result a = quantize(*ref, q, x, rows, cols), b = quantize(fast, q, x, rows, cols);
      for (size_t i = 0; i < x.size(); i++)
        ASSERT_TRUE(a.y[i] == b.y[i] || (std::isnan(a.y[i]) && std::isnan(b.y[i])))
            << q.describe() << " " << rows << "x" << cols << " at " << i << ": " << a.y[i] << " vs " << b.y[i];
      EXPECT_EQ(a.s.amax, b.s.amax) << q.describe();
      EXPECT_EQ(a.s.overflow, b.s.overflow) << q.describe();
      EXPECT_EQ(a.s.underflow, b.s.underflow) << q.describe();
      EXPECT_EQ(a.s.subnormal, b.s.subnormal) << q.describe();
      EXPECT_EQ(a.s.zero, b.s.zero) << q.describe();
    }
}

TEST(Quantize, CpuEqualsTheReferenceBitForBit) { expect_backend_is_the_reference(*make_backend("cpu")); }

// The device kernels (backend/cuda/quantize.cu; their steps run on the host in test_cuda_host),
// where a GPU is usable: scripts/gpu_check.sh runs this on a lent one.
TEST(Quantize, CudaEqualsTheReferenceBitForBit) {
  std::unique_ptr<Backend> cuda;
  try {
    cuda = make_backend("cuda");
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  expect_backend_is_the_reference(*cuda);
}

// Hand-computed blocks: the scale each rule selects and the values read back.
TEST(Quantize, BlockScaleSelection) {
  auto be = make_backend("cpu");
  std::vector<float> x(64, 0.0f);  // two MX blocks along a row
  x[0] = 3.0f, x[1] = 0.3f, x[2] = -1.0f;  // block 0: amax 3 -> X = -1 (either rule)
  x[32] = 7.0f, x[33] = 1.0f;              // block 1: amax 7
  QuantSpec up = spec(Elem::e2m1, ScaleKind::e8m0, Granularity::block);
  Result r = quantize(*be, up, x, 1, 64);
  EXPECT_EQ(r.y[0], 3.0f);    // 3 x 2 = 6
  EXPECT_EQ(r.y[1], 0.25f);   // 0.6 -> 0.5, / 2
  EXPECT_EQ(r.y[2], -1.0f);
  EXPECT_EQ(r.y[32], 8.0f);   // round up: X = 1, 3.5 ties to the even code (4), x 2
  EXPECT_EQ(r.y[33], 1.0f);   // 0.5 x 2
  EXPECT_EQ(r.s.overflow, 0);
  QuantSpec ocp = up;
  ocp.round_up = false;  // X = floor(log2 7) - 2 = 0: 7 saturates to 6
  r = quantize(*be, ocp, x, 1, 64);
  EXPECT_EQ(r.y[32], 6.0f);
  EXPECT_EQ(r.y[33], 1.0f);
  EXPECT_EQ(r.s.overflow, 1);
  // NVFP4, 16-blocks: tensor amax 12 -> S = 448 x 6 / 12 = 224. Block 0 (amax 3): d = e4m3(3 / 6
  // x 224 = 112) = 112, m = 2. Block 1 (amax 1): d = e4m3(37.33) = 36, m = 224 / 36.
  std::vector<float> v(32, 0.0f);
  v[0] = 3.0f, v[1] = 1.2f, v[16] = 1.0f, v[17] = 0.1f, v[31] = 12.0f;
  v[31] = 0;
  v[2] = 12.0f;  // make the tensor amax 12 inside block 0: d = e4m3(12 / 6 x 224) = 448, m = 0.5
  QuantSpec nv = spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, 1, 16);
  r = quantize(*be, nv, v, 1, 32);
  EXPECT_EQ(r.y[2], 12.0f);                   // 6 / 0.5
  EXPECT_EQ(r.y[0], 3.0f);                    // 1.5, / 0.5
  EXPECT_EQ(r.y[1], 1.0f);                    // 0.6 -> 0.5, / 0.5
  const float m1 = 224.0f / 36.0f;
  EXPECT_EQ(r.y[16], bf16_to_float(float_to_bf16(6.0f / m1)));  // 6.22 -> 6
  EXPECT_EQ(r.y[17], bf16_to_float(float_to_bf16(0.5f / m1)));  // 0.62 -> 0.5
  // fp8 current per tensor: the power of two that puts amax below 448 (amax 12: 32).
  QuantSpec cur = spec(Elem::e4m3, ScaleKind::pow2, Granularity::tensor);
  r = quantize(*be, cur, v, 1, 32);
  EXPECT_EQ(r.y[2], 12.0f);
  EXPECT_EQ(r.y[1], bf16_to_float(float_to_bf16(round_to_elem(elem_info(Elem::e4m3), 1.2f * 32) / 32)));
  // Per vector (rows): each row its own scale.
  std::vector<float> w = {1000.0f, 1.0f, 0.001f, 0.002f};  // (2, 2)
  r = quantize(*be, spec(Elem::e4m3, ScaleKind::pow2, Granularity::vector, 1), w, 2, 2);
  EXPECT_EQ(r.y[2], bf16_to_float(float_to_bf16(0.001f * 65536 > 0 ? round_to_elem(elem_info(Elem::e4m3), 0.001f * 131072) / 131072 : 0)));
  EXPECT_NE(r.y[2], 0.0f);  // per tensor it would underflow next to 1000
  EXPECT_EQ(quantize(*be, spec(Elem::e4m3, ScaleKind::pow2, Granularity::tensor), w, 2, 2).y[2], 0.0f);
}

// Read-back error: an element rounds with relative error <= 2^-(m+1) of its scaled value, or
// absolutely <= half the subnormal step below min normal; divided by the multiplier. Under
// an e4m3 scale the bf16 read-back adds one more rounding (2^-9 relative). Round-up MX and
// pow2 scales never saturate.
TEST(Quantize, ReadBackWithinTheFormatsBound) {
  auto be = make_backend("cpu");
  const int64_t rows = 32, cols = 128;
  const std::vector<float> x = spread_values(rows * cols, 5);
  for (const QuantSpec& q : all_specs()) {
    if (q.hadamard || q.stochastic || q.scale == ScaleKind::given || !q.round_up) continue;
    const Result r = quantize(*be, q, x, rows, cols);
    EXPECT_EQ(r.s.overflow, 0) << q.describe();
    const ElemInfo& f = elem_info(q.elem);
    // The multiplier is at least max_finite / (2 amax of the block) for these rules, so the
    // bound uses the block's amax: half the element's spacing at |x|, at most.
    for (int64_t i = 0; i < rows * cols; i++) {
      const double a = std::fabs(double(x[size_t(i)]));
      const double rel = std::ldexp(1.0, -(f.man_bits + 1)) + (q.scale == ScaleKind::e4m3 ? 0x1p-9 : 0.0);
      const double err = std::fabs(double(r.y[size_t(i)]) - double(x[size_t(i)]));
      // Elements below min normal in scaled units: absolute half step; bounded by the block amax.
      const double floor_abs = double(f.quantum()) / 2 * (2 * r.s.amax / f.max_finite) * 2;
      ASSERT_LE(err, std::max(rel * a * 1.0001, floor_abs)) << q.describe() << " x=" << x[size_t(i)];
    }
  }
}

TEST(Quantize, NanAndInfHandling) {
  auto be = make_backend("cpu");
  std::vector<float> x(64, 1.0f);
  x[3] = NAN;
  x[40] = INFINITY;
  // MX: a block holding NaN or inf reads back NaN throughout; the others are untouched.
  Result r = quantize(*be, spec(Elem::e2m1, ScaleKind::e8m0, Granularity::block), x, 1, 64);
  for (int i = 0; i < 64; i++) EXPECT_TRUE(std::isnan(r.y[size_t(i)])) << i;
  x[40] = 1.0f;
  r = quantize(*be, spec(Elem::e2m1, ScaleKind::e8m0, Granularity::block), x, 1, 64);
  for (int i = 0; i < 32; i++) EXPECT_TRUE(std::isnan(r.y[size_t(i)])) << i;
  for (int i = 32; i < 64; i++) EXPECT_EQ(r.y[size_t(i)], 1.0f) << i;
  EXPECT_EQ(r.s.overflow, 1);
  // Per-tensor fp8: NaN and inf pass through, the finite values are quantized.
  x[40] = -INFINITY;
  r = quantize(*be, spec(Elem::e4m3, ScaleKind::pow2, Granularity::tensor), x, 1, 64);
  EXPECT_TRUE(std::isnan(r.y[3]));
  EXPECT_EQ(r.y[40], -INFINITY);
  EXPECT_EQ(r.y[0], 1.0f);
  EXPECT_EQ(r.s.overflow, 2);
  EXPECT_EQ(r.s.amax, 1.0);
}

// A 2-D tile's scale is the same whether the matrix or its transpose is quantized, so forward
// (W) and backward (W^T) see one quantized weight.
TEST(Quantize, TilesAreTheSameForEitherAxis) {
  auto be = make_backend("cpu");
  const int64_t R = 48, C = 32;
  const std::vector<float> w = spread_values(R * C, 8);
  std::vector<float> wt(w.size());
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) wt[size_t(c * R + r)] = w[size_t(r * C + c)];
  const QuantSpec q = spec(Elem::e2m1, ScaleKind::e4m3, Granularity::tile, 1, 16);
  const Result a = quantize(*be, q, w, R, C), b = quantize(*be, q, wt, C, R);
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) ASSERT_EQ(a.y[size_t(r * C + c)], b.y[size_t(c * R + r)]) << r << "," << c;
}

// Transforming two operands alike along their shared axis keeps their product: sum_n x[n] d[n]
// of the transformed (unquantized: bf16 e5m2 with a huge given scale is not exact, so a pure
// transform is read through the reference's fp32 path) equals the original within the bf16
// rounding of the transformed values.
TEST(Quantize, HadamardKeepsTheReduction) {
  auto be = make_backend("cpu");
  const int64_t N = 64, C = 3, OC = 2;
  std::vector<float> x(N * C), d(N * OC);
  for (size_t i = 0; i < x.size(); i++) x[i] = bf16_to_float(float_to_bf16(float(normal01(1, 1, i))));
  for (size_t i = 0; i < d.size(); i++) d[i] = bf16_to_float(float_to_bf16(float(normal01(1, 2, i))));
  QuantSpec q = spec(Elem::e4m3, ScaleKind::pow2, Granularity::vector, 0);  // 8-bit: the transform dominates nothing
  q.hadamard = true, q.hadamard_seed = 77;
  const Result xq = quantize(*be, q, x, N, C), dq = quantize(*be, q, d, N, OC);
  for (int64_t c = 0; c < C; c++)
    for (int64_t o = 0; o < OC; o++) {
      double want = 0, got = 0, mag = 0;
      for (int64_t n = 0; n < N; n++) {
        want += double(x[size_t(n * C + c)]) * d[size_t(n * OC + o)];
        got += double(xq.y[size_t(n * C + c)]) * dq.y[size_t(n * OC + o)];
        mag += std::fabs(double(x[size_t(n * C + c)]) * d[size_t(n * OC + o)]);
      }
      // each transformed value carries e4m3's 2^-4 relative error (and bf16's 2^-9): two factors
      EXPECT_NEAR(got, want, 2 * (0x1p-4 + 0x1p-9) * std::sqrt(double(N)) * mag / std::sqrt(double(N)) + 1e-6);
    }
  // The transformed operands differ from the originals (the test would pass without it otherwise).
  EXPECT_NE(xq.y, quantize(*be, spec(Elem::e4m3, ScaleKind::pow2, Granularity::vector, 0), x, N, C).y);
}

TEST(Quantize, StochasticRoundingIsUnbiasedAndReproducible) {
  auto be = make_backend("cpu");
  const int64_t n = 16 * 512;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) x[size_t(i)] = (i % 16 == 0) ? 6.0f : 0.7f;  // 0.7 between 0.5 and 1
  QuantSpec q = spec(Elem::e2m1, ScaleKind::e8m0, Granularity::block, 1, 16);
  q.stochastic = true, q.seed = 5, q.stream = 1;
  const Result a = quantize(*be, q, x, 1, n), b = quantize(*be, q, x, 1, n);
  EXPECT_EQ(a.y, b.y);
  double sum = 0;
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (i % 16 != 0) {
      EXPECT_TRUE(a.y[size_t(i)] == 0.5f || a.y[size_t(i)] == 1.0f);
      sum += a.y[size_t(i)], k++;
    }
  EXPECT_NEAR(sum / double(k), 0.7, 5 * 0.25 / std::sqrt(double(k)));
  q.stream = 2;
  EXPECT_NE(quantize(*be, q, x, 1, n).y, a.y);
}
