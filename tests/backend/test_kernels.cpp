// Every kernel of every backend, in fp32 and (cpu) with 16-bit storage (bf16, fp16), against
// the double-precision reference, with bounds derived from fp32's unit roundoff u and the
// reduction length (docs/numerics.md explains each). Inputs are rounded to the storage dtype
// first, so the only error measured is the kernel's own arithmetic. A 16-bit kernel computes in
// fp32 and rounds each stored result once, so its bound is the fp32 bound E plus one rounding
// of the result: u16 (|want| + E), plus half the format's smallest subnormal (widen()).
// Buffers that stay fp32 in 16-bit mode (parameter gradients, layernorm statistics, lse,
// losses) keep the fp32 bound. The reference kernels themselves are checked by central finite
// differences (test_layers_fd) and closed forms (test_gemm).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/reference/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;
namespace ref = meshlm::reference;

namespace {

constexpr double u = kF32Eps;

struct Case {
  std::string backend;
  int64_t B, T, C, NH, V, Vp;
  DType dt = DType::fp32;  // storage of activations, weights and activation gradients
  int64_t NKV = 0;         // key/value heads of attention (grouped-query); 0: NH
  int64_t nkv() const { return NKV > 0 ? NKV : NH; }
  std::string name() const {
    return backend + "_" + dtype_name(dt) + "_B" + std::to_string(B) + "_T" + std::to_string(T) +
           "_C" + std::to_string(C) + "_NH" + std::to_string(NH) + "_KV" + std::to_string(nkv()) + "_V" +
           std::to_string(V);
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

// The backend the running test's buffers live in (set by the fixture): every pointer a test
// passes to a kernel is that backend's buffer, as ops.inc demands (the cuda backend's device
// memory, the cpu backend's host memory alike).
thread_local Backend* tls_backend = nullptr;

// A buffer of n values in dtype dt (fp32 or 16-bit), filled from and read back as doubles. Its
// values live in host bytes until data() is asked for, then in a buffer of the test's backend;
// get() and host() read them back from there.
struct Buf {
  DType dt;
  std::vector<char> bytes;
  Backend* be = tls_backend;
  void* dev = nullptr;
  Buf(DType d, const std::vector<double>& v) : dt(d), bytes(v.size() * dtype_size(d)) {
    const auto f = to_float(v);
    convert_from_f32(dt, bytes.data(), f.data(), f.size());
  }
  Buf(DType d, size_t n) : dt(d), bytes(n * dtype_size(d)) {}
  Buf(Buf&& o) noexcept : dt(o.dt), bytes(std::move(o.bytes)), be(o.be), dev(o.dev) { o.dev = nullptr; }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() {
    if (dev) be->deallocate(dev, bytes.size());
  }
  void* data() {
    if (!dev) {
      dev = be->allocate(std::max<size_t>(bytes.size(), 1));
      be->upload(dev, bytes.data(), bytes.size());
    }
    return dev;
  }
  const std::vector<char>& host() {
    if (dev) be->download(bytes.data(), dev, bytes.size());
    return bytes;
  }
  std::vector<double> get() {
    host();
    std::vector<float> f(bytes.size() / dtype_size(dt));
    convert_to_f32(dt, f.data(), bytes.data(), f.size());
    return to_double(f);
  }
};

// A host vector's values in a buffer of the test's backend for the length of one call (the
// full expression): uploaded first, and (for a non-const vector) downloaded back after.
template <class T>
class DevVec {
 public:
  DevVec(const std::vector<T>& v, std::vector<T>* back) : back_(back), bytes_(v.size() * sizeof(T)) {
    p_ = be_->allocate(std::max<size_t>(bytes_, 1));
    be_->upload(p_, v.data(), bytes_);
  }
  ~DevVec() {
    if (back_) be_->download(back_->data(), p_, bytes_);
    be_->deallocate(p_, std::max<size_t>(bytes_, 1));
  }
  DevVec(const DevVec&) = delete;
  template <class U>
  operator U*() const {
    return static_cast<U*>(p_);
  }

 private:
  Backend* be_ = tls_backend;
  std::vector<T>* back_;
  size_t bytes_;
  void* p_ = nullptr;
};
template <class T>
DevVec<T> dev(std::vector<T>& v) {
  return DevVec<T>(v, &v);
}
template <class T>
DevVec<T> dev(const std::vector<T>& v) {
  return DevVec<T>(v, nullptr);
}

class Kernels : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    try {
      be = make_backend(GetParam().backend);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();  // the cuda backend without a usable GPU
    }
    tls_backend = be.get();
    if (!be->supports(Op::matmul, dt())) GTEST_SKIP() << be->name() << " has no " << dtype_name(dt());
  }
  std::unique_ptr<Backend> be;
  int64_t N() const { return GetParam().B * GetParam().T; }
  DType dt() const { return GetParam().dt; }
  bool is16() const { return dt() != DType::fp32; }
  // Random values in [lo, hi) rounded to the storage dtype (exactly representable there).
  std::vector<double> vals(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) const {
    return Buf(dt(), random_f32_values(n, seed, lo, hi)).get();
  }
  // Rounds doubles to the storage dtype (values the kernel reads as inputs).
  std::vector<double> rounded(const std::vector<double>& v) const { return Buf(dt(), v).get(); }
  // The unit roundoff of an intermediate a 16-bit kernel may round to its storage dtype to use
  // it as a product's operand (attention's P and dS); 0 for fp32.
  double u_operand() const { return is16() ? std::ldexp(1.0, -float_format(dt()).man_bits - 1) : 0.0; }
  // The fp32 bound E of a stored result, widened by one rounding to the storage dtype.
  void widen(std::vector<double>& bound, const std::vector<double>& want) const {
    if (!is16()) return;
    const FloatFormat f = float_format(dt());
    const double u16 = std::ldexp(1.0, -f.man_bits - 1);
    const double tiny = std::ldexp(1.0, -f.bias - f.man_bits);  // half the smallest subnormal
    for (size_t i = 0; i < bound.size(); i++) bound[i] += u16 * (std::fabs(want[i]) + bound[i]) + tiny;
  }
};

TEST_P(Kernels, MatmulForward) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C, OC = 3 * p.C;
  for (WeightLayout layout : {WeightLayout::in_out, WeightLayout::out_in}) {
    auto inp = vals(N * C, 1), w = vals(C * OC, 2), b = vals(OC, 3);
    Buf out(dt(), N * OC);
    be->matmul_forward(dt(), out.data(), Buf(dt(), inp).data(), Buf(dt(), w).data(),
                       Buf(dt(), b).data(), N, C, OC, layout);
    std::vector<double> want(N * OC), mag(N * OC);
    ref::matmul_forward(want.data(), inp.data(), w.data(), b.data(), N, C, OC, layout);
    ref::matmul_forward(mag.data(), abs_values(inp).data(), abs_values(w).data(),
                        abs_values(b).data(), N, C, OC, layout);
    // C products plus the bias: a (C+1)-term sum, gamma_{C+1} times the sum of |terms|.
    for (double& m : mag) m *= gamma(C + 1);
    widen(mag, want);
    EXPECT_TRUE(within(out.get(), want, mag)) << "layout " << int(layout);
  }
}

TEST_P(Kernels, MatmulBackward) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C, OC = 4 * p.C;
  for (WeightLayout layout : {WeightLayout::in_out, WeightLayout::out_in}) {
    auto inp = vals(N * C, 4), w = vals(C * OC, 5), dout = vals(N * OC, 6);
    // Gradients start non-zero to check the += convention; dweight and dbias are fp32 always.
    auto dinp0 = vals(N * C, 7), dw0 = random_f32_values(C * OC, 8), db0 = random_f32_values(OC, 9);
    Buf dinp(dt(), dinp0);
    auto dw = to_float(dw0), db = to_float(db0);
    be->matmul_backward(dt(), dinp.data(), dev(dw), dev(db), Buf(dt(), dout).data(),
                        Buf(dt(), inp).data(), Buf(dt(), w).data(), N, C, OC, layout);
    auto want_dinp = dinp0, want_dw = dw0, want_db = db0;
    ref::matmul_backward(want_dinp.data(), want_dw.data(), want_db.data(), dout.data(), inp.data(),
                         w.data(), N, C, OC, layout);
    auto m_dinp = abs_values(dinp0), m_dw = abs_values(dw0), m_db = abs_values(db0);
    ref::matmul_backward(m_dinp.data(), m_dw.data(), m_db.data(), abs_values(dout).data(),
                         abs_values(inp).data(), abs_values(w).data(), N, C, OC, layout);
    for (double& m : m_dinp) m *= gamma(OC + 1);  // prior value + OC products
    for (double& m : m_dw) m *= gamma(N + 1);     // prior value + N products
    for (double& m : m_db) m *= gamma(N + 1);
    widen(m_dinp, want_dinp);
    EXPECT_TRUE(within(dinp.get(), want_dinp, m_dinp)) << "dinp";
    EXPECT_TRUE(within(dw, want_dw, m_dw)) << "dweight";
    EXPECT_TRUE(within(db, want_db, m_db)) << "dbias";
  }
}

TEST_P(Kernels, LayerNormForward) {
  const int64_t N = this->N(), C = GetParam().C;
  auto x = vals(N * C, 10, -2, 3), w = vals(C, 11), b = vals(C, 12);
  Buf out(dt(), N * C);
  std::vector<float> mean(N), rstd(N);
  be->layernorm_forward(dt(), out.data(), dev(mean), dev(rstd), Buf(dt(), x).data(),
                        Buf(dt(), w).data(), Buf(dt(), b).data(), N, C);
  std::vector<double> want(N * C), wm(N), ws(N);
  ref::layernorm_forward(want.data(), wm.data(), ws.data(), x.data(), w.data(), b.data(), N, C);
  // mean: a C-term sum, error dm <= gamma_C mean|x|. variance: C squares of (x - m), each off
  // by u|x - m| + dm, then the sum: relative error of var <= gamma_{C+3} + 2 dm mean|x-m| / var.
  // rstd = 1/sqrt(var + eps) halves that and adds 2u. y = xhat w + b adds 3 roundings.
  std::vector<double> bound(N * C), bm(N), bs(N);
  for (int64_t n = 0; n < N; n++) {
    double mabs = 0, mdev = 0, var = 0;
    for (int64_t c = 0; c < C; c++) {
      mabs += std::fabs(x[n * C + c]) / C;
      mdev += std::fabs(x[n * C + c] - wm[n]) / C;
      var += (x[n * C + c] - wm[n]) * (x[n * C + c] - wm[n]) / C;
    }
    const double dm = gamma(C) * mabs;
    const double rel_s = 0.5 * (gamma(C + 3) + 2 * dm * mdev / var) + 2 * u;
    bm[n] = dm;
    bs[n] = rel_s * ws[n];
    for (int64_t c = 0; c < C; c++) {
      const double xhat_w = std::fabs((x[n * C + c] - wm[n]) * ws[n] * w[c]);
      bound[n * C + c] = std::fabs(w[c]) * ws[n] * (dm + u * std::fabs(x[n * C + c] - wm[n])) +
                         xhat_w * rel_s + 3 * u * (xhat_w + std::fabs(b[c]));
    }
  }
  widen(bound, want);
  EXPECT_TRUE(within(out.get(), want, bound)) << "out";
  EXPECT_TRUE(within(mean, wm, bm)) << "mean";
  EXPECT_TRUE(within(rstd, ws, bs)) << "rstd";
}

// The fused residual add + layernorm promises the bits of residual_forward then
// layernorm_forward (each checked against its oracle in its own test), for every dtype.
TEST_P(Kernels, ResidualLayerNormIsTheTwoCallsFused) {
  const int64_t N = this->N(), C = GetParam().C;
  auto a = vals(N * C, 80, -2, 2), b = vals(N * C, 81), w = vals(C, 82), bias = vals(C, 83);
  Buf ab(dt(), a), bb(dt(), b), wb(dt(), w), biasb(dt(), bias);
  Buf sum1(dt(), N * C), out1(dt(), N * C), sum2(dt(), N * C), out2(dt(), N * C);
  std::vector<float> m1(N), s1(N), m2(N), s2(N);
  be->residual_forward(dt(), sum1.data(), ab.data(), bb.data(), N * C);
  be->layernorm_forward(dt(), out1.data(), dev(m1), dev(s1), sum1.data(), wb.data(), biasb.data(), N, C);
  be->residual_layernorm_forward(dt(), sum2.data(), out2.data(), dev(m2), dev(s2), ab.data(), bb.data(), wb.data(),
                                 biasb.data(), N, C);
  EXPECT_EQ(sum1.host(), sum2.host()) << "sum";
  EXPECT_EQ(out1.host(), out2.host()) << "out";
  EXPECT_EQ(0, std::memcmp(m1.data(), m2.data(), size_t(N) * 4)) << "mean";
  EXPECT_EQ(0, std::memcmp(s1.data(), s2.data(), size_t(N) * 4)) << "rstd";
}

TEST_P(Kernels, LayerNormBackward) {
  const int64_t N = this->N(), C = GetParam().C;
  auto x = vals(N * C, 13, -2, 3), w = vals(C, 14), g = vals(N * C, 15);
  // mean and rstd are inputs here: take the kernel's fp32 values, so both sides see the same.
  Buf y(dt(), N * C);
  std::vector<float> mean(N), rstd(N);
  be->layernorm_forward(dt(), y.data(), dev(mean), dev(rstd), Buf(dt(), x).data(),
                        Buf(dt(), w).data(), Buf(dt(), w).data(), N, C);
  auto dx0 = vals(N * C, 16), dw0 = random_f32_values(C, 17), db0 = random_f32_values(C, 18);
  Buf dx(dt(), dx0);
  auto dw = to_float(dw0), db = to_float(db0);
  be->layernorm_backward(dt(), dx.data(), dev(dw), dev(db), Buf(dt(), g).data(),
                         Buf(dt(), x).data(), Buf(dt(), w).data(), dev(mean), dev(rstd), N, C);
  auto wdx = dx0, wdw = dw0, wdb = db0;
  auto md = to_double(mean), rs = to_double(rstd);
  ref::layernorm_backward(wdx.data(), wdw.data(), wdb.data(), g.data(), x.data(), w.data(),
                          md.data(), rs.data(), N, C);
  // xhat = (x - m) s: 2 roundings. dx = s (g w - mean(g w) - xhat mean(g w xhat)): the two
  // C-term means carry gamma_C of their |terms| means; then 5 more roundings; plus the += .
  // dw, db: N-term sums (+ the prior value) of g xhat (3 roundings each) and g.
  std::vector<double> bdx(N * C), bdw(C, 0), bdb(C, 0);
  for (int64_t n = 0; n < N; n++) {
    double a1 = 0, a2 = 0;
    for (int64_t c = 0; c < C; c++) {
      const double xhat = std::fabs((x[n * C + c] - md[n]) * rs[n]);
      a1 += std::fabs(g[n * C + c] * w[c]) / C;
      a2 += std::fabs(g[n * C + c] * w[c]) * xhat / C;
    }
    for (int64_t c = 0; c < C; c++) {
      const double xhat = std::fabs((x[n * C + c] - md[n]) * rs[n]);
      const double mag = rs[n] * (std::fabs(g[n * C + c] * w[c]) + a1 + xhat * a2);
      bdx[n * C + c] = (gamma(C + 2) + 8 * u) * 2 * mag + u * std::fabs(wdx[n * C + c]);
      bdw[c] += std::fabs(g[n * C + c]) * xhat;
      bdb[c] += std::fabs(g[n * C + c]);
    }
  }
  for (int64_t c = 0; c < C; c++) {
    bdw[c] = (gamma(N + 1) + 3 * u) * (bdw[c] + std::fabs(dw0[c]));
    bdb[c] = gamma(N + 1) * (bdb[c] + std::fabs(db0[c]));
  }
  widen(bdx, wdx);
  EXPECT_TRUE(within(dx.get(), wdx, bdx)) << "dinp";
  EXPECT_TRUE(within(dw, wdw, bdw)) << "dweight";
  EXPECT_TRUE(within(db, wdb, bdb)) << "dbias";
}

// Per-row magnitudes of attention used by the attention bounds (see docs/numerics.md):
// smax = max_j scale * sum_i |q_i k_ji| (the size of a score), p (B, NH, T, T) the exact
// probabilities.
struct AttentionMagnitudes {
  std::vector<double> smax, p;
};

// One buffer (B, T, W) holds q (NH heads), k and v (NKV heads each) side by side, W = (NH + 2 NKV)
// HS: GPT-2's qkv when NKV = NH; the kernels read it through leading dimensions.
struct QkvLayout {
  int64_t B, T, C, NH, NKV, HS, W;
  QkvLayout(int64_t B_, int64_t T_, int64_t C_, int64_t NH_, int64_t NKV_)
      : B(B_), T(T_), C(C_), NH(NH_), NKV(NKV_), HS(C_ / NH_), W(C_ + 2 * NKV_ * (C_ / NH_)) {}
  int64_t q(int64_t b, int64_t t, int64_t h) const { return (b * T + t) * W + h * HS; }
  int64_t k(int64_t b, int64_t t, int64_t h) const { return (b * T + t) * W + C + (h / (NH / NKV)) * HS; }
  int64_t v(int64_t b, int64_t t, int64_t h) const { return k(b, t, h) + NKV * HS; }
  AttentionShape shape() const { return {B, T, NH, NKV, HS, W, W}; }
};

AttentionMagnitudes attention_magnitudes(const std::vector<double>& qkv, const QkvLayout& L) {
  const int64_t B = L.B, T = L.T, NH = L.NH, HS = L.HS;
  const double scale = 1.0 / std::sqrt(double(HS));
  AttentionMagnitudes m{std::vector<double>(B * NH * T), std::vector<double>(B * NH * T * T, 0)};
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        const double* q = &qkv[L.q(b, t, h)];
        std::vector<double> s(t + 1);
        double smax = 0, mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const double* k = &qkv[L.k(b, j, h)];
          double dot = 0, adot = 0;
          for (int64_t i = 0; i < HS; i++) {
            dot += q[i] * k[i];
            adot += std::fabs(q[i] * k[i]);
          }
          s[j] = dot * scale;
          smax = std::max(smax, adot * scale);
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j <= t; j++) z += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= t; j++) m.p[((b * NH + h) * T + t) * T + j] = std::exp(s[j] - mx) / z;
        m.smax[(b * NH + h) * T + t] = smax;
      }
  return m;
}

// The double-precision forward (want, wl) of qkv and the bounds (bo, bl) of an fp32 kernel's.
// A score carries gamma_HS * smax absolute error (+2u relative for the scaling); exp turns an
// absolute error e of its argument into a relative error e, and the normaliser (a T-term sum)
// adds gamma_T: each probability is off by rel_p = 2 (gamma_{HS+1} smax + 6u) + gamma_T.
// out = sum_j p_j v_j adds gamma_T of sum_j p_j |v_j|. lse = max + log(sum) is off by the
// score error plus gamma_T + 4u, plus u |lse|.
// u_p: the unit roundoff of the probabilities as operands of P V (0: fp32 arithmetic; a 16-bit
// kernel may round P to its storage dtype before that product, adding u_p of the sum of |terms|).
void attention_oracle(const std::vector<double>& qkv, const QkvLayout& L, int64_t B, int64_t T, int64_t C, int64_t NH,
                      std::vector<double>& want, std::vector<double>& wl, std::vector<double>& bo, std::vector<double>& bl,
                      double u_p) {
  const int64_t HS = C / NH;
  want.assign(B * T * C, 0);
  wl.assign(B * NH * T, 0);
  ref::attention_forward(want.data(), wl.data(), qkv.data(), qkv.data() + C, qkv.data() + C + L.NKV * HS, L.shape());
  auto m = attention_magnitudes(qkv, L);
  bo.assign(B * T * C, 0);
  bl.assign(B * NH * T, 0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        const int64_t row = (b * NH + h) * T + t;
        const double es = gamma(HS + 1) * m.smax[row] + 6 * u;
        const double rel_p = 2 * es + gamma(T + 1);
        bl[row] = es + gamma(T + 1) + 4 * u + u * std::fabs(wl[row]);
        for (int64_t i = 0; i < HS; i++) {
          double mag = 0;
          for (int64_t j = 0; j <= t; j++)
            mag += m.p[row * T + j] * std::fabs(qkv[L.v(b, j, h) + i]);
          bo[(b * T + t) * C + h * HS + i] = (rel_p + gamma(T + 1) + u_p) * mag;
        }
      }
}

TEST_P(Kernels, AttentionForward) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, NH = p.NH, HS = C / NH;
  const QkvLayout L(B, T, C, NH, p.nkv());
  auto qkv = vals(B * T * L.W, 20, -2, 2);
  Buf out(dt(), B * T * C), in(dt(), qkv);
  std::vector<float> lse(B * NH * T);
  const size_t esz = dtype_size(dt());
  char* qb = static_cast<char*>(in.data());
  be->attention_forward(dt(), out.data(), dev(lse), qb, qb + C * esz, qb + (C + L.NKV * HS) * esz, L.shape());
  std::vector<double> want, wl, bo, bl;
  attention_oracle(qkv, L, B, T, C, NH, want, wl, bo, bl, u_operand());
  widen(bo, want);
  EXPECT_TRUE(within(out.get(), want, bo)) << "out";
  EXPECT_TRUE(within(lse, wl, bl)) << "lse";
}

// A KV-cache step is the forward's last row of a sequence: batch 0's row T - 1, its query
// against the T rows of keys and values (ld W), with the forward's bound for that row.
TEST_P(Kernels, AttentionDecode) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, NH = p.NH, HS = C / NH;
  const QkvLayout L(B, T, C, NH, p.nkv());
  auto qkv = vals(B * T * L.W, 21, -2, 2);
  Buf out(dt(), C), in(dt(), qkv);
  const size_t esz = dtype_size(dt());
  char* qb = static_cast<char*>(in.data());
  const AttentionShape s{1, 1, NH, L.NKV, HS, L.W, L.W};
  be->attention_decode(dt(), out.data(), qb + size_t((T - 1) * L.W) * esz, qb + C * esz, qb + (C + L.NKV * HS) * esz, s, T);
  std::vector<double> want, wl, bo, bl;
  attention_oracle(qkv, L, B, T, C, NH, want, wl, bo, bl, u_operand());
  widen(bo, want);
  const std::vector<double> last(want.begin() + (T - 1) * C, want.begin() + T * C), lb(bo.begin() + (T - 1) * C, bo.begin() + T * C);
  EXPECT_TRUE(within(out.get(), last, lb)) << "out";
}

TEST_P(Kernels, AttentionBackward) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, NH = p.NH, HS = C / NH;
  const double scale = 1.0 / std::sqrt(double(HS));
  const QkvLayout L(B, T, C, NH, p.nkv());
  const int64_t kv0 = C, v0 = C + L.NKV * HS;  // k's and v's first channel in a row
  auto qkv = vals(B * T * L.W, 21, -2, 2), dout = vals(B * T * C, 22);
  // out and lse are inputs of the backward: the double forward's values rounded to the
  // storage dtype (out) and fp32 (lse).
  std::vector<double> out(B * T * C), lse(B * NH * T);
  ref::attention_forward(out.data(), lse.data(), qkv.data(), qkv.data() + kv0, qkv.data() + v0, L.shape());
  out = rounded(out);
  for (double& x : lse) x = double(float(x));
  auto d0 = vals(B * T * L.W, 23);
  Buf dqkv(dt(), d0), in(dt(), qkv);
  const size_t esz = dtype_size(dt());
  char *db = static_cast<char*>(dqkv.data()), *qb = static_cast<char*>(in.data());
  be->attention_backward(dt(), db, db + kv0 * esz, db + v0 * esz, Buf(dt(), dout).data(), qb, qb + kv0 * esz,
                         qb + v0 * esz, Buf(dt(), out).data(), dev(to_float(lse)), L.shape());
  auto want = d0;
  ref::attention_backward(want.data(), want.data() + kv0, want.data() + v0, dout.data(), qkv.data(),
                          qkv.data() + kv0, qkv.data() + v0, out.data(), lse.data(), L.shape());
  auto m = attention_magnitudes(qkv, L);
  // p_j is recomputed from the score and the saved lse: relative error rel_p as in forward (the
  // lse input differs from exact by its fp32 rounding, u|lse|). dp_j = dout.v_j and D = dout.out
  // carry gamma_HS of their |terms| sums; ds_j = p_j (dp_j - D) scale. Each gradient is a sum
  // over up to T such terms: gamma_T of the sum of |terms|, plus each term's own error. A 16-bit
  // kernel may round p_j and ds_j to its storage dtype as operands: u_p of each more.
  const double u_p = u_operand();
  std::vector<double> bound(B * T * L.W);
  for (size_t i = 0; i < bound.size(); i++) bound[i] = u * std::fabs(want[i]);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        const int64_t row = (b * NH + h) * T + t;
        const double rel_p = 2 * (gamma(HS + 1) * m.smax[row] + 6 * u) + u * std::fabs(lse[row]) + 4 * u;
        const double* go = &dout[(b * T + t) * C + h * HS];
        const double* o = &out[(b * T + t) * C + h * HS];
        double D = 0, Dabs = 0;
        for (int64_t i = 0; i < HS; i++) {
          D += go[i] * o[i];
          Dabs += std::fabs(go[i] * o[i]);
        }
        for (int64_t j = 0; j <= t; j++) {
          const double pj = m.p[row * T + j];
          const double* v = &qkv[L.v(b, j, h)];
          const double* k = &qkv[L.k(b, j, h)];
          const double* q = &qkv[L.q(b, t, h)];
          double dp = 0, dpabs = 0;
          for (int64_t i = 0; i < HS; i++) {
            dp += go[i] * v[i];
            dpabs += std::fabs(go[i] * v[i]);
          }
          const double ds = pj * std::fabs(dp - D) * scale;
          const double ds_err = pj * scale * (rel_p * std::fabs(dp - D) + gamma(HS + 2) * (dpabs + Dabs)) +
                                (4 * u + u_p) * ds;
          for (int64_t i = 0; i < HS; i++) {
            // dq_t += ds_j k_j ; dk_j += ds_j q_t ; dv_j += p_j dout_t
            // (a kv head's sums run over its group's heads too: gamma of group x T terms)
            const double gk = gamma(T * (NH / L.NKV) + 2);
            bound[L.q(b, t, h) + i] += ds_err * std::fabs(k[i]) + gamma(T + 2) * ds * std::fabs(k[i]);
            bound[L.k(b, j, h) + i] += ds_err * std::fabs(q[i]) + gk * ds * std::fabs(q[i]);
            bound[L.v(b, j, h) + i] += (rel_p + gk + u_p) * pj * std::fabs(go[i]);
          }
        }
      }
  for (size_t i = 0; i < bound.size(); i++) bound[i] += gamma(T * (NH / L.NKV) + 2) * std::fabs(d0[i]);
  widen(bound, want);
  EXPECT_TRUE(within(dqkv.get(), want, bound));
}

TEST_P(Kernels, RmsNorm) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C;
  const float eps = 1e-5f;
  auto x = vals(N * C, 80, -2, 2), w = vals(C, 81, 0.5, 1.5), g = vals(N * C, 82), d0 = vals(N * C, 83);
  auto dw0 = random_f32_values(C, 84);
  Buf y(dt(), N * C);
  std::vector<float> r(N);
  be->rmsnorm_forward(dt(), y.data(), dev(r), Buf(dt(), x).data(), Buf(dt(), w).data(), N, C, eps);
  std::vector<double> wy(N * C), wr(N);
  ref::rmsnorm_forward(wy.data(), wr.data(), x.data(), w.data(), N, C, double(eps));
  // mean(x^2): C positive terms, gamma_{C+2} relative (the squares, /C, + eps); the inverse
  // square root halves it and adds 2u; y = x r w two more roundings.
  std::vector<double> by(N * C), br(N);
  for (int64_t n = 0; n < N; n++) {
    br[n] = (0.5 * gamma(C + 2) + 2 * u) * wr[n];
    for (int64_t c = 0; c < C; c++) by[n * C + c] = (0.5 * gamma(C + 2) + 4 * u) * std::fabs(wy[n * C + c]);
  }
  widen(by, wy);
  EXPECT_TRUE(within(y.get(), wy, by)) << "forward";
  EXPECT_TRUE(within(to_double(r), wr, br)) << "rstd";
  // Backward from the fp32 rstd (an input): dx = r g w - r^3 x mean(g w x), dw += sum_n g x r.
  std::vector<double> rs = to_double(r);
  Buf dx(dt(), d0);
  auto dw = to_float(dw0);
  be->rmsnorm_backward(dt(), dx.data(), dev(dw), Buf(dt(), g).data(), Buf(dt(), x).data(), Buf(dt(), w).data(),
                       dev(r), N, C);
  auto wdx = d0, wdw = dw0;
  ref::rmsnorm_backward(wdx.data(), wdw.data(), g.data(), x.data(), w.data(), rs.data(), N, C);
  std::vector<double> bdx(N * C), bdw(C, 0.0);
  for (int64_t n = 0; n < N; n++) {
    double dot = 0, S = 0;
    for (int64_t c = 0; c < C; c++) {
      dot += g[n * C + c] * w[c] * x[n * C + c];
      S += std::fabs(g[n * C + c] * w[c] * x[n * C + c]);
    }
    const double r3 = rs[n] * rs[n] * rs[n], k = r3 * std::fabs(dot) / double(C);
    const double ek = 6 * u * k + r3 / double(C) * gamma(C + 2) * S;  // of k = r^3 dot / C
    for (int64_t c = 0; c < C; c++) {
      const int64_t i = n * C + c;
      bdx[i] = 3 * u * std::fabs(rs[n] * g[i] * w[c]) + (ek + u * k) * std::fabs(x[i]) +
               2 * u * (std::fabs(d0[i]) + std::fabs(wdx[i]));
      bdw[c] += std::fabs(g[i] * x[i] * rs[n]);
    }
  }
  for (int64_t c = 0; c < C; c++) bdw[c] = gamma(N + 3) * (bdw[c] + std::fabs(dw0[c]));
  widen(bdx, wdx);
  EXPECT_TRUE(within(dx.get(), wdx, bdx)) << "dinp";
  EXPECT_TRUE(within(to_double(dw), wdw, bdw)) << "dweight";
}

TEST_P(Kernels, Rope) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, H = p.NH, HS = p.C / p.NH, half = HS / 2, n = B * T * H * HS;
  // A table of fp32 cosines and sines (an input: the layer computes it), angles as Llama's.
  std::vector<float> cs(T * HS);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < half; i++) {
      const double a = double(t) * std::pow(10000.0, -2.0 * double(i) / double(HS));
      cs[(t * half + i) * 2] = float(std::cos(a));
      cs[(t * half + i) * 2 + 1] = float(std::sin(a));
    }
  const std::vector<double> csd = to_double(cs);
  auto x = vals(n, 85, -2, 2);
  for (int sign : {+1, -1}) {
    Buf y(dt(), x);
    if (sign > 0) be->rope_forward(dt(), y.data(), dev(cs), B, T, H, HS);
    else be->rope_backward(dt(), y.data(), dev(cs), B, T, H, HS);
    auto want = x;
    ref::rope_rotate(want.data(), csd.data(), B, T, H, HS, sign);
    // Each output is a x1 c -+ x2 s: two products and a sum, gamma_2 of the |terms|.
    std::vector<double> bound(n);
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
          for (int64_t i = 0; i < half; i++) {
            const int64_t r = ((b * T + t) * H + h) * HS;
            const double c = std::fabs(csd[(t * half + i) * 2]), sn = std::fabs(csd[(t * half + i) * 2 + 1]);
            const double m = c * (std::fabs(x[r + i]) + std::fabs(x[r + i + half])) +
                             sn * (std::fabs(x[r + i]) + std::fabs(x[r + i + half]));
            bound[r + i] = bound[r + i + half] = gamma(int64_t(2)) * m;
          }
    widen(bound, want);
    EXPECT_TRUE(within(y.get(), want, bound)) << (sign > 0 ? "forward" : "backward");
  }
}

TEST_P(Kernels, SwiGlu) {
  const int64_t n = this->N() * GetParam().C;
  auto gt = vals(n, 86, -6, 6), up = vals(n, 87, -2, 2), g = vals(n, 88), d0 = vals(n, 89), e0 = vals(n, 90);
  Buf y(dt(), n), dg(dt(), d0), du(dt(), e0);
  be->swiglu_forward(dt(), y.data(), Buf(dt(), gt).data(), Buf(dt(), up).data(), n);
  be->swiglu_backward(dt(), dg.data(), du.data(), Buf(dt(), g).data(), Buf(dt(), gt).data(), Buf(dt(), up).data(), n);
  std::vector<double> wy(n), wdg = d0, wdu = e0;
  ref::swiglu_forward(wy.data(), gt.data(), up.data(), n);
  ref::swiglu_backward(wdg.data(), wdu.data(), g.data(), gt.data(), up.data(), n);
  // The sigmoid s = 1 / (1 + exp(-g)): exp within 4 ulp, two roundings: 6u relative; silu and
  // the product with up two more. Backward: 1 - s cancels when s is near 1, an absolute 6u s,
  // which g multiplies; the rest are roundings of products (a handful of u each).
  std::vector<double> by(n), bdg(n), bdu(n);
  for (int64_t i = 0; i < n; i++) {
    const double s = 1.0 / (1.0 + std::exp(-gt[i])), ag = std::fabs(gt[i]);
    const double dus = std::fabs(g[i] * up[i] * s), inner = std::fabs(1.0 + gt[i] * (1.0 - s));
    by[i] = 9 * u * std::fabs(wy[i]);
    bdg[i] = dus * (7 * u * ag * s + 4 * u * (1.0 + ag * std::fabs(1.0 - s))) + 10 * u * dus * inner +
             2 * u * (std::fabs(d0[i]) + std::fabs(wdg[i]));
    bdu[i] = 10 * u * std::fabs(g[i] * gt[i] * s) + 2 * u * (std::fabs(e0[i]) + std::fabs(wdu[i]));
  }
  widen(by, wy);
  widen(bdg, wdg);
  widen(bdu, wdu);
  EXPECT_TRUE(within(y.get(), wy, by)) << "forward";
  EXPECT_TRUE(within(dg.get(), wdg, bdg)) << "dgate";
  EXPECT_TRUE(within(du.get(), wdu, bdu)) << "dup";
}

TEST_P(Kernels, Gelu) {
  const int64_t n = this->N() * GetParam().C;
  auto x = vals(n, 30, -6, 6), g = vals(n, 31), d0 = vals(n, 32);
  Buf y(dt(), n), dx(dt(), d0);
  be->gelu_forward(dt(), y.data(), Buf(dt(), x).data(), n);
  be->gelu_backward(dt(), dx.data(), Buf(dt(), x).data(), Buf(dt(), g).data(), n);
  std::vector<double> wy(n), wdx = d0;
  ref::gelu_forward(wy.data(), x.data(), n);
  ref::gelu_backward(wdx.data(), x.data(), g.data(), n);
  // tanh(s) written as 1 - 2/(exp(2s)+1): exp within 4 ulp, then ~6 roundings, and tanh's
  // error is absolute (cancellation near 0): 16u. gelu = 0.5 x (1 + tanh): 16u |x| + 2u |y|.
  // The derivative: 0.5(1+th) + 0.5 x (1-th^2) s (1 + 3c x^2): 32u times its |terms|.
  std::vector<double> by(n), bdx(n);
  for (int64_t i = 0; i < n; i++) {
    const double ax = std::fabs(x[i]);
    by[i] = 16 * u * ax + 2 * u * std::fabs(wy[i]);
    const double dmag = 1 + 0.5 * ax * 0.8 * (1 + 0.134 * ax * ax);
    bdx[i] = 32 * u * ax * dmag * std::fabs(g[i]) + 32 * u * dmag * std::fabs(g[i]) +
             2 * u * (std::fabs(d0[i]) + std::fabs(wdx[i]));
  }
  widen(by, wy);
  widen(bdx, wdx);
  EXPECT_TRUE(within(y.get(), wy, by)) << "forward";
  EXPECT_TRUE(within(dx.get(), wdx, bdx)) << "backward";
}

TEST_P(Kernels, ResidualIsExactlyRounded) {
  const int64_t n = this->N() * GetParam().C;
  auto a = vals(n, 33), b = vals(n, 34);
  Buf out(dt(), n);
  be->residual_forward(dt(), out.data(), Buf(dt(), a).data(), Buf(dt(), b).data(), n);
  std::vector<double> want(n), bound(n, 0.0);
  for (int64_t i = 0; i < n; i++) want[i] = a[i] + b[i];
  if (!is16()) {
    EXPECT_EQ(out.get(), to_double(to_float(want)));  // one rounding
  } else {  // the fp32 sum (one rounding, u), then the 16-bit one
    for (int64_t i = 0; i < n; i++) bound[i] = u * std::fabs(want[i]);
    widen(bound, want);
    EXPECT_TRUE(within(out.get(), want, bound));
  }
}

TEST_P(Kernels, Embedding) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, V = p.V;
  std::vector<int32_t> tok(B * T);
  for (int64_t i = 0; i < B * T; i++) tok[i] = int32_t((i * 7 + i / 3) % V);
  auto wte = vals(V * C, 40), wpe = vals(T * C, 41), g = vals(B * T * C, 42);
  Buf out(dt(), B * T * C);
  be->embedding_forward(dt(), out.data(), dev(tok), Buf(dt(), wte).data(), Buf(dt(), wpe).data(), B, T, C);
  std::vector<double> want(B * T * C), bound(B * T * C, 0.0);
  for (int64_t i = 0; i < B * T * C; i++) {
    const int64_t bt = i / C, c = i % C, t = bt % T;
    want[i] = wte[tok[bt] * C + c] + wpe[t * C + c];
    bound[i] = is16() ? u * std::fabs(want[i]) : 0.0;
  }
  if (!is16()) {
    EXPECT_EQ(out.get(), to_double(to_float(want)));  // one rounding
  } else {  // the fp32 sum, then the 16-bit rounding
    widen(bound, want);
    EXPECT_TRUE(within(out.get(), want, bound)) << "embedding forward";
  }
  // dwte, dwpe are fp32 in every mode.
  auto dte0 = random_f32_values(V * C, 43), dpe0 = random_f32_values(T * C, 44);
  auto dte = to_float(dte0), dpe = to_float(dpe0);
  be->embedding_backward(dt(), dev(dte), dev(dpe), Buf(dt(), g).data(), dev(tok), B, T, C);
  auto wte_g = dte0, wpe_g = dpe0, mte = abs_values(dte0), mpe = abs_values(dpe0);
  ref::embedding_backward(wte_g.data(), wpe_g.data(), g.data(), tok.data(), B, T, C);
  ref::embedding_backward(mte.data(), mpe.data(), abs_values(g).data(), tok.data(), B, T, C);
  // Each row gathers at most B*T contributions plus its prior value.
  for (double& m : mte) m *= gamma(B * T + 1);
  for (double& m : mpe) m *= gamma(B + 1);
  EXPECT_TRUE(within(dte, wte_g, mte)) << "dwte";
  EXPECT_TRUE(within(dpe, wpe_g, mpe)) << "dwpe";
}

TEST_P(Kernels, CrossEntropy) {
  const auto& p = GetParam();
  const int64_t N = this->N(), V = p.V, Vp = p.Vp;
  auto logits = vals(N * Vp, 50, -8, 8);
  std::vector<int32_t> tgt(N);
  for (int64_t i = 0; i < N; i++) tgt[i] = int32_t((i * 13) % V);
  const double dloss = 1.0 / double(N);
  for (bool grad : {false, true}) {
    Buf lg(dt(), logits);
    std::vector<float> loss(N);
    be->crossentropy_forward_backward(dt(), dev(loss), lg.data(), dev(tgt),
                                      grad ? float(dloss) : 0.0f, N, V, Vp);
    auto wlg = logits;
    std::vector<double> wloss(N);
    ref::crossentropy_forward_backward(wloss.data(), wlg.data(), tgt.data(), grad ? dloss : 0.0, N, V, Vp);
    // lse = max + log(sum of V exps): sum off by gamma_V + 4u (exp), log adds 2u absolute,
    // then u |lse| and the subtraction u |loss|. The gradient p - 1[target] times dloss: p =
    // exp(x - lse) inherits the lse error plus u (|x| + |lse|) + 4u, relative to p.
    std::vector<double> bl(N), bg(N * Vp, 0);
    for (int64_t n = 0; n < N; n++) {
      double lse = wloss[n] + logits[n * Vp + tgt[n]];
      double e_lse = gamma(V + 1) + 8 * u + u * std::fabs(lse);
      bl[n] = e_lse + u * std::fabs(logits[n * Vp + tgt[n]]) + u * std::fabs(wloss[n]);
      for (int64_t v = 0; v < V && grad; v++) {
        const double pv = std::exp(logits[n * Vp + v] - lse);
        bg[n * Vp + v] = dloss * (pv * (e_lse + u * (std::fabs(logits[n * Vp + v]) + std::fabs(lse)) + 6 * u) + 2 * u);
      }
    }
    EXPECT_TRUE(within(loss, wloss, bl)) << "loss";
    if (grad) {
      widen(bg, wlg);
      const auto got = lg.get();
      EXPECT_TRUE(within(got, wlg, bg)) << "dlogits";
      for (int64_t n = 0; n < N; n++)
        for (int64_t v = V; v < Vp; v++) ASSERT_EQ(got[n * Vp + v], 0.0) << "padding column " << v;
    } else {
      EXPECT_EQ(lg.get(), logits) << "logits must be untouched without a gradient";
    }
  }
}

// The vocabulary-parallel halves: the columns of each row split between two "ranks" (each with
// its own padding), log-sum-exp per part, combined in double as the ranks' reduction would,
// then each part's gradient given the whole row's lse: the whole-row cross-entropy, within the
// CrossEntropy test's bounds (the combination adds one more rounding of lse, u |lse|).
TEST_P(Kernels, CrossEntropySplitAcrossRanks) {
  const auto& p = GetParam();
  const int64_t N = this->N(), V = p.V, Vh = (V + 1) / 2, Vp = (Vh + 15) / 16 * 16;
  auto logits = vals(N * 2 * Vp, 51, -8, 8);  // part r of row n: columns [n 2Vp + r Vp, ... + Vp)
  std::vector<int32_t> tgt(N);
  for (int64_t i = 0; i < N; i++) tgt[i] = int32_t((i * 13) % V);
  const double dloss = 1.0 / double(N);
  std::vector<double> whole(N * V);  // the unsplit rows, for the reference
  for (int64_t n = 0; n < N; n++)
    for (int64_t v = 0; v < V; v++) whole[n * V + v] = logits[(n * 2 + v / Vh) * Vp + v % Vh];
  std::vector<double> wloss(N);
  auto wgrad = whole;
  ref::crossentropy_forward_backward(wloss.data(), wgrad.data(), tgt.data(), dloss, N, V, V);
  std::vector<double> lse(N, 0.0), part_lse[2];
  std::vector<Buf> parts;
  for (int r = 0; r < 2; r++) {
    const int64_t Vr = r == 0 ? Vh : V - Vh;  // valid columns of this part
    std::vector<double> mine(N * Vp);
    for (int64_t n = 0; n < N; n++)
      for (int64_t v = 0; v < Vp; v++) mine[n * Vp + v] = logits[(n * 2 + r) * Vp + v];
    parts.emplace_back(dt(), mine);
    std::vector<float> l(N);
    be->logsumexp_rows(dt(), dev(l), parts.back().data(), N, Vr, Vp);
    part_lse[r] = to_double(l);
  }
  std::vector<float> lse32(N);
  for (int64_t n = 0; n < N; n++) {
    const double m = std::max(part_lse[0][n], part_lse[1][n]);
    lse[n] = m + std::log(std::exp(part_lse[0][n] - m) + std::exp(part_lse[1][n] - m));
    lse32[n] = float(lse[n]);
    const double loss = lse[n] - whole[n * V + tgt[n]];
    const double e_lse = gamma(V + 1) + 8 * u + 2 * u * std::fabs(lse[n]);
    EXPECT_NEAR(loss, wloss[n], e_lse + u * std::fabs(wloss[n]) + 2 * u * std::fabs(whole[n * V + tgt[n]])) << n;
  }
  for (int r = 0; r < 2; r++) {
    const int64_t Vr = r == 0 ? Vh : V - Vh, v0 = r == 0 ? 0 : Vh;
    std::vector<int32_t> local(N);
    for (int64_t n = 0; n < N; n++) local[n] = tgt[n] >= v0 && tgt[n] < v0 + Vr ? int32_t(tgt[n] - v0) : -1;
    be->crossentropy_backward_given_lse(dt(), parts[size_t(r)].data(), dev(lse32), dev(local), float(dloss), N, Vr, Vp);
    const auto got = parts[size_t(r)].get();
    std::vector<double> g, want, bound;
    for (int64_t n = 0; n < N; n++)
      for (int64_t v = 0; v < Vp; v++) {
        if (v >= Vr) {
          ASSERT_EQ(got[n * Vp + v], 0.0) << "padding column " << v;
          continue;
        }
        const double x = whole[n * V + v0 + v], pv = std::exp(x - lse[n]);
        const double e_lse = gamma(V + 1) + 8 * u + 2 * u * std::fabs(lse[n]);
        g.push_back(got[n * Vp + v]);
        want.push_back(wgrad[n * V + v0 + v]);
        bound.push_back(dloss * (pv * (e_lse + u * (std::fabs(x) + std::fabs(lse[n])) + 6 * u) + 2 * u));
      }
    widen(bound, want);
    EXPECT_TRUE(within(g, want, bound)) << "part " << r;
  }
}

// A negative token id (not on this rank) contributes no row and takes no gradient; a null
// wpe contributes nothing: the pieces a vocabulary-parallel embedding sums across ranks.
TEST_P(Kernels, EmbeddingPartsOfTheVocabulary) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, V = p.V;
  std::vector<int32_t> tok(B * T);
  for (int64_t i = 0; i < B * T; i++) tok[i] = i % 3 == 0 ? -1 : int32_t((i * 7) % V);
  auto wte = vals(V * C, 45);
  Buf out(dt(), B * T * C);
  be->embedding_forward(dt(), out.data(), dev(tok), Buf(dt(), wte).data(), nullptr, B, T, C);
  const auto got = out.get();
  for (int64_t i = 0; i < B * T * C; i++) {
    const int64_t bt = i / C, c = i % C;
    ASSERT_EQ(got[i], tok[bt] < 0 ? 0.0 : wte[tok[bt] * C + c]) << i;  // exact: nothing is added
  }
  std::vector<float> dwte(V * C, 0.0f);
  auto g = vals(B * T * C, 46);
  be->embedding_backward(dt(), dev(dwte), nullptr, Buf(dt(), g).data(), dev(tok), B, T, C);
  std::vector<double> want(V * C, 0.0);
  for (int64_t i = 0; i < B * T * C; i++)
    if (tok[i / C] >= 0) want[tok[i / C] * C + i % C] += g[i];
  std::vector<double> bound(V * C), mag(V * C, 0.0);  // gamma of the sum of |terms| per element
  for (int64_t i = 0; i < B * T * C; i++)
    if (tok[i / C] >= 0) mag[tok[i / C] * C + i % C] += std::fabs(g[i]);
  for (size_t i = 0; i < bound.size(); i++) bound[i] = gamma(B * T + 1) * mag[i];
  EXPECT_TRUE(within(dwte, want, bound));
}

TEST_P(Kernels, AdamW) {
  if (is16()) GTEST_SKIP() << "the optimizer runs on the fp32 master weights";
  const int64_t n = 4099;  // not a multiple of any vector width
  auto p0 = random_f32_values(n, 60), g = random_f32_values(n, 61), m0 = random_f32_values(n, 62, -0.1, 0.1),
       v0 = random_f32_values(n, 63, 0, 0.01);
  AdamWArgs a{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 7};
  auto pp = to_float(p0), mm = to_float(m0), vv = to_float(v0);
  be->adamw_update(DType::fp32, dev(pp), dev(to_float(g)), dev(mm), dev(vv), n, a);
  auto wp = p0, wm = m0, wv = v0;
  ref::adamw_update(wp.data(), g.data(), wm.data(), wv.data(), n, a);
  // The hyperparameters are fp32 values on both sides. m, v: 4 roundings each. The update
  // r = mhat / (sqrt(vhat) + eps) chains ~12 roundings and pow() (4 ulp): 24u |r|; then
  // p - lr (r + wd p): 4u of |p| + lr (|r| + wd |p|).
  std::vector<double> bp(n), bm(n), bv(n);
  for (int64_t i = 0; i < n; i++) {
    const double c1 = 1 - std::pow(double(a.beta1), 7.0), c2 = 1 - std::pow(double(a.beta2), 7.0);
    const double r = std::fabs(wm[i] / c1 / (std::sqrt(wv[i] / c2) + double(a.eps)));
    bp[i] = 4 * u * std::fabs(p0[i]) + double(a.lr) * (24 * u * r + 4 * u * (r + 0.1 * std::fabs(p0[i])));
    bm[i] = 4 * u * (std::fabs(m0[i]) + std::fabs(g[i]));
    bv[i] = 4 * u * (std::fabs(v0[i]) + g[i] * g[i]);
  }
  EXPECT_TRUE(within(pp, wp, bp)) << "param";
  EXPECT_TRUE(within(mm, wm, bm)) << "m";
  EXPECT_TRUE(within(vv, wv, bv)) << "v";
}

// The weight refresh fused into the update: the same parameter and moment bits as
// adamw_update (checked against the oracle above), and the copy is exactly those parameters
// rounded to nearest even - compared with the double values rounded, not with another kernel.
TEST_P(Kernels, AdamWRoundFusesTheWeightRefresh) {
  if (!is16()) GTEST_SKIP() << "the copy is 16-bit";
  const int64_t n = 5001;  // more than two blocks of the cpu kernel, and a remainder
  auto p0 = random_f32_values(n, 64), g = random_f32_values(n, 65), m0 = random_f32_values(n, 66, -0.1, 0.1),
       v0 = random_f32_values(n, 67, 0, 0.01);
  const AdamWArgs a{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3};
  auto pp = to_float(p0), mm = to_float(m0), vv = to_float(v0);
  auto fp = pp, fm = mm, fv = vv;
  const auto gf = to_float(g);
  be->adamw_update(DType::fp32, dev(pp), dev(gf), dev(mm), dev(vv), n, a);
  Buf copy(dt(), size_t(n));
  be->adamw_update_round(DType::fp32, dev(fp), dev(gf), dev(fm), dev(fv), n, a, dt(), copy.data());
  ASSERT_EQ(0, std::memcmp(pp.data(), fp.data(), size_t(n) * 4)) << "param";
  ASSERT_EQ(0, std::memcmp(mm.data(), fm.data(), size_t(n) * 4)) << "m";
  ASSERT_EQ(0, std::memcmp(vv.data(), fv.data(), size_t(n) * 4)) << "v";
  const auto got = copy.get();
  const auto want = rounded(std::vector<double>(pp.begin(), pp.end()));
  for (int64_t i = 0; i < n; i++) ASSERT_EQ(got[size_t(i)], want[size_t(i)]) << i;
}

TEST_P(Kernels, SumSquares) {
  if (is16()) GTEST_SKIP() << "gradients are fp32";
  const int64_t n = 100003;
  auto x = random_f32_values(n, 70);
  double want = 0;
  for (double v : x) want += v * v;
  // fp32 squares are exact in double; an n-term double sum: gamma_n with u = 2^-53.
  EXPECT_NEAR(be->sum_squares(DType::fp32, dev(to_float(x)), n), want, gamma(n, 0x1p-53) * want);
}

// The backward kernels (the ones with reductions across rows) give the same bits twice.
TEST_P(Kernels, RunsAreBitIdentical) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C, OC = 3 * p.C, HS = C / p.NH;
  const QkvLayout L(p.B, p.T, C, p.NH, p.nkv());
  auto inp = vals(N * C, 1), w = vals(C * OC, 2), dout = vals(N * OC, 3), g = vals(N * C, 4), qkv = vals(N * L.W, 5);
  std::vector<int32_t> tok(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; i++) tok[size_t(i)] = int32_t((i * 7) % p.V);
  auto run = [&]() {
    Buf dinp(dt(), size_t(N * C)), dw(DType::fp32, size_t(C * OC)), db(DType::fp32, size_t(OC));
    be->matmul_backward(dt(), dinp.data(), dw.data(), db.data(), Buf(dt(), dout).data(), Buf(dt(), inp).data(),
                        Buf(dt(), w).data(), N, C, OC, WeightLayout::in_out);
    Buf y(dt(), size_t(N * C)), mean(DType::fp32, size_t(N)), rstd(DType::fp32, size_t(N)), dx(dt(), size_t(N * C));
    Buf lw(DType::fp32, size_t(C)), lb(DType::fp32, size_t(C)), wc(dt(), vals(C, 6));
    be->layernorm_forward(dt(), y.data(), mean.data(), rstd.data(), Buf(dt(), inp).data(), wc.data(), wc.data(), N, C);
    be->layernorm_backward(dt(), dx.data(), lw.data(), lb.data(), Buf(dt(), g).data(), Buf(dt(), inp).data(),
                           wc.data(), mean.data(), rstd.data(), N, C);
    Buf in(dt(), qkv), out(dt(), size_t(N * C)), lse(DType::fp32, size_t(p.B * p.NH * p.T)), dq(dt(), size_t(N * L.W));
    const size_t esz = dtype_size(dt());
    char *qb = static_cast<char*>(in.data()), *dqb = static_cast<char*>(dq.data());
    const int64_t kv0 = C, v0 = C + L.NKV * HS;
    be->attention_forward(dt(), out.data(), lse.data(), qb, qb + kv0 * esz, qb + v0 * esz, L.shape());
    be->attention_backward(dt(), dqb, dqb + kv0 * esz, dqb + v0 * esz, Buf(dt(), g).data(), qb, qb + kv0 * esz,
                           qb + v0 * esz, out.data(), lse.data(), L.shape());
    Buf dte(DType::fp32, size_t(p.V * C)), dpe(DType::fp32, size_t(p.T * C));
    be->embedding_backward(dt(), dte.data(), dpe.data(), Buf(dt(), g).data(), dev(tok), p.B, p.T, C);
    std::vector<std::vector<char>> all;
    for (Buf* b : {&dinp, &dw, &db, &dx, &lw, &lb, &out, &lse, &dq, &dte, &dpe}) all.push_back(b->host());
    return all;
  };
  const auto first = run(), second = run();
  for (size_t i = 0; i < first.size(); i++) EXPECT_EQ(first[i], second[i]) << "output " << i;
}

// Shapes: tiny odd sizes that exercise remainders, and a GPT-2-like head size of 64.
INSTANTIATE_TEST_SUITE_P(
    All, Kernels,
    ::testing::Values(Case{"cpu", 2, 7, 24, 3, 50, 128}, Case{"cpu", 2, 64, 128, 2, 256, 256},
                      Case{"cpu", 1, 33, 192, 3, 300, 384}, Case{"reference", 2, 7, 24, 3, 50, 128},
                      Case{"reference", 1, 16, 64, 2, 256, 256},
                      Case{"cpu", 2, 7, 24, 3, 50, 128, DType::bf16},
                      Case{"cpu", 1, 33, 192, 3, 300, 384, DType::bf16},
                      Case{"cpu", 2, 7, 24, 3, 50, 128, DType::fp16},
                      Case{"cpu", 1, 33, 192, 3, 300, 384, DType::fp16},
                      // grouped-query (2 query heads per kv head) and multi-query attention
                      Case{"cpu", 2, 7, 48, 4, 50, 128, DType::fp32, 2}, Case{"reference", 2, 7, 48, 4, 50, 128, DType::fp32, 2},
                      Case{"cpu", 2, 19, 64, 4, 50, 128, DType::fp32, 1},
                      Case{"cpu", 2, 7, 48, 4, 50, 128, DType::bf16, 2}, Case{"cpu", 2, 19, 64, 4, 50, 128, DType::fp16, 1}),
    [](const auto& info) { return info.param.name(); });

// The cuda backend on the same cases (skipped where no GPU is usable: scripts/gpu_check.sh
// runs them on a lent one), and a GPT-2-sized head and row. 16-bit attention with a head size
// that is a multiple of 16 runs on tensor cores (attention_tc.cu; the 64-row tiles padded at T
// 70 and 130, grouped-query at 2 query heads per kv head), the others on the warp-per-row
// kernels; MESHLM_CUDA_ATTENTION=simple runs every case on the latter.
INSTANTIATE_TEST_SUITE_P(
    Cuda, Kernels,
    ::testing::Values(Case{"cuda", 2, 7, 24, 3, 50, 128}, Case{"cuda", 2, 64, 128, 2, 256, 256},
                      Case{"cuda", 1, 33, 192, 3, 300, 384}, Case{"cuda", 1, 70, 768, 12, 1000, 1024},
                      Case{"cuda", 2, 7, 24, 3, 50, 128, DType::bf16}, Case{"cuda", 1, 33, 192, 3, 300, 384, DType::bf16},
                      Case{"cuda", 1, 70, 768, 12, 1000, 1024, DType::bf16},
                      Case{"cuda", 2, 7, 24, 3, 50, 128, DType::fp16}, Case{"cuda", 1, 33, 192, 3, 300, 384, DType::fp16},
                      Case{"cuda", 2, 7, 48, 4, 50, 128, DType::fp32, 2}, Case{"cuda", 2, 19, 64, 4, 50, 128, DType::fp32, 1},
                      Case{"cuda", 2, 7, 48, 4, 50, 128, DType::bf16, 2},
                      Case{"cuda", 2, 70, 256, 4, 300, 384, DType::bf16, 2},
                      Case{"cuda", 1, 130, 128, 2, 256, 256, DType::fp16}),
    [](const auto& info) { return info.param.name(); });

}  // namespace
