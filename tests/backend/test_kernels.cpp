// Every fp32 kernel of every backend against the double-precision reference, with bounds
// derived from fp32's unit roundoff u and the reduction length (docs/numerics.md explains
// each). Inputs are rounded to fp32 first, so the only error measured is the kernel's own
// arithmetic. The reference kernels themselves are checked by central finite differences
// (test_layers_fd) and closed forms (test_gemm).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/reference/kernels.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;
namespace ref = meshlm::reference;

namespace {

constexpr double u = kF32Eps;

struct Case {
  std::string backend;
  int64_t B, T, C, NH, V, Vp;
  std::string name() const {
    return backend + "_B" + std::to_string(B) + "_T" + std::to_string(T) + "_C" +
           std::to_string(C) + "_NH" + std::to_string(NH) + "_V" + std::to_string(V);
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

class Kernels : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { be = make_backend(GetParam().backend); }
  std::unique_ptr<Backend> be;
  int64_t N() const { return GetParam().B * GetParam().T; }
};

TEST_P(Kernels, MatmulForward) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C, OC = 3 * p.C;
  for (WeightLayout layout : {WeightLayout::in_out, WeightLayout::out_in}) {
    auto inp = random_f32_values(N * C, 1), w = random_f32_values(C * OC, 2), b = random_f32_values(OC, 3);
    std::vector<float> out(N * OC);
    be->matmul_forward(DType::fp32, out.data(), to_float(inp).data(), to_float(w).data(),
                       to_float(b).data(), N, C, OC, layout);
    std::vector<double> want(N * OC), mag(N * OC);
    ref::matmul_forward(want.data(), inp.data(), w.data(), b.data(), N, C, OC, layout);
    ref::matmul_forward(mag.data(), abs_values(inp).data(), abs_values(w).data(),
                        abs_values(b).data(), N, C, OC, layout);
    // C products plus the bias: a (C+1)-term sum, gamma_{C+1} times the sum of |terms|.
    for (double& m : mag) m *= gamma(C + 1);
    EXPECT_TRUE(within(out, want, mag)) << "layout " << int(layout);
  }
}

TEST_P(Kernels, MatmulBackward) {
  const auto& p = GetParam();
  const int64_t N = this->N(), C = p.C, OC = 4 * p.C;
  for (WeightLayout layout : {WeightLayout::in_out, WeightLayout::out_in}) {
    auto inp = random_f32_values(N * C, 4), w = random_f32_values(C * OC, 5),
         dout = random_f32_values(N * OC, 6);
    // Gradients start non-zero to check the += convention.
    auto dinp0 = random_f32_values(N * C, 7), dw0 = random_f32_values(C * OC, 8),
         db0 = random_f32_values(OC, 9);
    auto dinp = to_float(dinp0), dw = to_float(dw0), db = to_float(db0);
    be->matmul_backward(DType::fp32, dinp.data(), dw.data(), db.data(), to_float(dout).data(),
                        to_float(inp).data(), to_float(w).data(), N, C, OC, layout);
    auto want_dinp = dinp0, want_dw = dw0, want_db = db0;
    ref::matmul_backward(want_dinp.data(), want_dw.data(), want_db.data(), dout.data(), inp.data(),
                         w.data(), N, C, OC, layout);
    auto m_dinp = abs_values(dinp0), m_dw = abs_values(dw0), m_db = abs_values(db0);
    ref::matmul_backward(m_dinp.data(), m_dw.data(), m_db.data(), abs_values(dout).data(),
                         abs_values(inp).data(), abs_values(w).data(), N, C, OC, layout);
    for (double& m : m_dinp) m *= gamma(OC + 1);  // prior value + OC products
    for (double& m : m_dw) m *= gamma(N + 1);     // prior value + N products
    for (double& m : m_db) m *= gamma(N + 1);
    EXPECT_TRUE(within(dinp, want_dinp, m_dinp)) << "dinp";
    EXPECT_TRUE(within(dw, want_dw, m_dw)) << "dweight";
    EXPECT_TRUE(within(db, want_db, m_db)) << "dbias";
  }
}

TEST_P(Kernels, LayerNormForward) {
  const int64_t N = this->N(), C = GetParam().C;
  auto x = random_f32_values(N * C, 10, -2, 3), w = random_f32_values(C, 11), b = random_f32_values(C, 12);
  std::vector<float> out(N * C), mean(N), rstd(N);
  be->layernorm_forward(DType::fp32, out.data(), mean.data(), rstd.data(), to_float(x).data(),
                        to_float(w).data(), to_float(b).data(), N, C);
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
  EXPECT_TRUE(within(out, want, bound)) << "out";
  EXPECT_TRUE(within(mean, wm, bm)) << "mean";
  EXPECT_TRUE(within(rstd, ws, bs)) << "rstd";
}

TEST_P(Kernels, LayerNormBackward) {
  const int64_t N = this->N(), C = GetParam().C;
  auto x = random_f32_values(N * C, 13, -2, 3), w = random_f32_values(C, 14), g = random_f32_values(N * C, 15);
  // mean and rstd are inputs here: take the fp32 kernel's values, so both sides see the same.
  std::vector<float> y(N * C), mean(N), rstd(N);
  be->layernorm_forward(DType::fp32, y.data(), mean.data(), rstd.data(), to_float(x).data(),
                        to_float(w).data(), to_float(w).data(), N, C);
  auto dx0 = random_f32_values(N * C, 16), dw0 = random_f32_values(C, 17), db0 = random_f32_values(C, 18);
  auto dx = to_float(dx0), dw = to_float(dw0), db = to_float(db0);
  be->layernorm_backward(DType::fp32, dx.data(), dw.data(), db.data(), to_float(g).data(),
                         to_float(x).data(), to_float(w).data(), mean.data(), rstd.data(), N, C);
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
  EXPECT_TRUE(within(dx, wdx, bdx)) << "dinp";
  EXPECT_TRUE(within(dw, wdw, bdw)) << "dweight";
  EXPECT_TRUE(within(db, wdb, bdb)) << "dbias";
}

// Per-row magnitudes of attention used by both attention bounds (see docs/numerics.md):
// smax = max_j scale * sum_i |q_i k_ji| (the size of a score), p (B, NH, T, T) the exact
// probabilities.
struct AttentionMagnitudes {
  std::vector<double> smax, p;
};

AttentionMagnitudes attention_magnitudes(const std::vector<double>& qkv, int64_t B, int64_t T,
                                         int64_t C, int64_t NH) {
  const int64_t HS = C / NH;
  const double scale = 1.0 / std::sqrt(double(HS));
  AttentionMagnitudes m{std::vector<double>(B * NH * T), std::vector<double>(B * NH * T * T, 0)};
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        const double* q = &qkv[(b * T + t) * 3 * C + h * HS];
        std::vector<double> s(t + 1);
        double smax = 0, mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const double* k = &qkv[(b * T + j) * 3 * C + C + h * HS];
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

TEST_P(Kernels, AttentionForward) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, NH = p.NH, HS = C / NH;
  auto qkv = random_f32_values(B * T * 3 * C, 20, -2, 2);
  std::vector<float> out(B * T * C), lse(B * NH * T);
  be->attention_forward(DType::fp32, out.data(), lse.data(), to_float(qkv).data(), B, T, C, NH);
  std::vector<double> want(B * T * C), wl(B * NH * T);
  ref::attention_forward(want.data(), wl.data(), qkv.data(), B, T, C, NH);
  auto m = attention_magnitudes(qkv, B, T, C, NH);
  // A score carries gamma_HS * smax absolute error (+2u relative for the scaling); exp turns an
  // absolute error e of its argument into a relative error e, and the normaliser (a T-term sum)
  // adds gamma_T: each probability is off by rel_p = 2 (gamma_{HS+1} smax + 6u) + gamma_T.
  // out = sum_j p_j v_j adds gamma_T of sum_j p_j |v_j|. lse = max + log(sum) is off by the
  // score error plus gamma_T + 4u, plus u |lse|.
  std::vector<double> bo(B * T * C), bl(B * NH * T);
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
            mag += m.p[row * T + j] * std::fabs(qkv[(b * T + j) * 3 * C + 2 * C + h * HS + i]);
          bo[(b * T + t) * C + h * HS + i] = (rel_p + gamma(T + 1)) * mag;
        }
      }
  EXPECT_TRUE(within(out, want, bo)) << "out";
  EXPECT_TRUE(within(lse, wl, bl)) << "lse";
}

TEST_P(Kernels, AttentionBackward) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, NH = p.NH, HS = C / NH;
  const double scale = 1.0 / std::sqrt(double(HS));
  auto qkv = random_f32_values(B * T * 3 * C, 21, -2, 2), dout = random_f32_values(B * T * C, 22);
  // out and lse are inputs of the backward: use the double forward's values rounded to fp32.
  std::vector<double> out(B * T * C), lse(B * NH * T);
  ref::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
  for (double& x : out) x = double(float(x));
  for (double& x : lse) x = double(float(x));
  auto d0 = random_f32_values(B * T * 3 * C, 23);
  auto dqkv = to_float(d0);
  be->attention_backward(DType::fp32, dqkv.data(), to_float(dout).data(), to_float(qkv).data(),
                         to_float(out).data(), to_float(lse).data(), B, T, C, NH);
  auto want = d0;
  ref::attention_backward(want.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, C, NH);
  auto m = attention_magnitudes(qkv, B, T, C, NH);
  // p_j is recomputed from the score and the saved lse: relative error rel_p as in forward (the
  // lse input differs from exact by its fp32 rounding, u|lse|). dp_j = dout.v_j and D = dout.out
  // carry gamma_HS of their |terms| sums; ds_j = p_j (dp_j - D) scale. Each gradient is a sum
  // over up to T such terms: gamma_T of the sum of |terms|, plus each term's own error.
  std::vector<double> bound(B * T * 3 * C);
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
          const double* v = &qkv[(b * T + j) * 3 * C + 2 * C + h * HS];
          const double* k = &qkv[(b * T + j) * 3 * C + C + h * HS];
          const double* q = &qkv[(b * T + t) * 3 * C + h * HS];
          double dp = 0, dpabs = 0;
          for (int64_t i = 0; i < HS; i++) {
            dp += go[i] * v[i];
            dpabs += std::fabs(go[i] * v[i]);
          }
          const double ds = pj * std::fabs(dp - D) * scale;
          const double ds_err = pj * scale * (rel_p * std::fabs(dp - D) + gamma(HS + 2) * (dpabs + Dabs)) +
                                4 * u * ds;
          for (int64_t i = 0; i < HS; i++) {
            // dq_t += ds_j k_j ; dk_j += ds_j q_t ; dv_j += p_j dout_t
            bound[(b * T + t) * 3 * C + h * HS + i] += ds_err * std::fabs(k[i]) + gamma(T + 2) * ds * std::fabs(k[i]);
            bound[(b * T + j) * 3 * C + C + h * HS + i] += ds_err * std::fabs(q[i]) + gamma(T + 2) * ds * std::fabs(q[i]);
            bound[(b * T + j) * 3 * C + 2 * C + h * HS + i] +=
                (rel_p + gamma(T + 2)) * pj * std::fabs(go[i]);
          }
        }
      }
  for (size_t i = 0; i < bound.size(); i++) bound[i] += gamma(T + 2) * std::fabs(d0[i]);
  EXPECT_TRUE(within(dqkv, want, bound));
}

TEST_P(Kernels, Gelu) {
  const int64_t n = this->N() * GetParam().C;
  auto x = random_f32_values(n, 30, -6, 6), g = random_f32_values(n, 31), d0 = random_f32_values(n, 32);
  std::vector<float> y(n);
  be->gelu_forward(DType::fp32, y.data(), to_float(x).data(), n);
  auto dx = to_float(d0);
  be->gelu_backward(DType::fp32, dx.data(), to_float(x).data(), to_float(g).data(), n);
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
  EXPECT_TRUE(within(y, wy, by)) << "forward";
  EXPECT_TRUE(within(dx, wdx, bdx)) << "backward";
}

TEST_P(Kernels, ResidualIsExactlyRounded) {
  const int64_t n = this->N() * GetParam().C;
  auto a = random_f32_values(n, 33), b = random_f32_values(n, 34);
  std::vector<float> out(n);
  be->residual_forward(DType::fp32, out.data(), to_float(a).data(), to_float(b).data(), n);
  for (int64_t i = 0; i < n; i++) ASSERT_EQ(out[i], float(a[i] + b[i])) << i;  // one rounding
}

TEST_P(Kernels, Embedding) {
  const auto& p = GetParam();
  const int64_t B = p.B, T = p.T, C = p.C, V = p.V;
  std::vector<int32_t> tok(B * T);
  for (int64_t i = 0; i < B * T; i++) tok[i] = int32_t((i * 7 + i / 3) % V);
  auto wte = random_f32_values(V * C, 40), wpe = random_f32_values(T * C, 41), g = random_f32_values(B * T * C, 42);
  std::vector<float> out(B * T * C);
  be->embedding_forward(DType::fp32, out.data(), tok.data(), to_float(wte).data(), to_float(wpe).data(), B, T, C);
  for (int64_t i = 0; i < B * T * C; i++) {
    const int64_t bt = i / C, c = i % C, t = bt % T;
    ASSERT_EQ(out[i], float(wte[tok[bt] * C + c] + wpe[t * C + c])) << i;  // one rounding
  }
  auto dte0 = random_f32_values(V * C, 43), dpe0 = random_f32_values(T * C, 44);
  auto dte = to_float(dte0), dpe = to_float(dpe0);
  be->embedding_backward(DType::fp32, dte.data(), dpe.data(), to_float(g).data(), tok.data(), B, T, C);
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
  auto logits = random_f32_values(N * Vp, 50, -8, 8);
  std::vector<int32_t> tgt(N);
  for (int64_t i = 0; i < N; i++) tgt[i] = int32_t((i * 13) % V);
  const double dloss = 1.0 / double(N);
  for (bool grad : {false, true}) {
    auto lg = to_float(logits);
    std::vector<float> loss(N);
    be->crossentropy_forward_backward(DType::fp32, loss.data(), lg.data(), tgt.data(),
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
      EXPECT_TRUE(within(lg, wlg, bg)) << "dlogits";
      for (int64_t n = 0; n < N; n++)
        for (int64_t v = V; v < Vp; v++) ASSERT_EQ(lg[n * Vp + v], 0.0f) << "padding column " << v;
    } else {
      EXPECT_EQ(lg, to_float(logits)) << "logits must be untouched without a gradient";
    }
  }
}

TEST_P(Kernels, AdamW) {
  const int64_t n = 4099;  // not a multiple of any vector width
  auto p0 = random_f32_values(n, 60), g = random_f32_values(n, 61), m0 = random_f32_values(n, 62, -0.1, 0.1),
       v0 = random_f32_values(n, 63, 0, 0.01);
  AdamWArgs a{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 7};
  auto pp = to_float(p0), mm = to_float(m0), vv = to_float(v0);
  be->adamw_update(DType::fp32, pp.data(), to_float(g).data(), mm.data(), vv.data(), n, a);
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

TEST_P(Kernels, SumSquares) {
  const int64_t n = 100003;
  auto x = random_f32_values(n, 70);
  double want = 0;
  for (double v : x) want += v * v;
  // fp32 squares are exact in double; an n-term double sum: gamma_n with u = 2^-53.
  EXPECT_NEAR(be->sum_squares(DType::fp32, to_float(x).data(), n), want, gamma(n, 0x1p-53) * want);
}

// Shapes: tiny odd sizes that exercise remainders, and a GPT-2-like head size of 64.
INSTANTIATE_TEST_SUITE_P(
    All, Kernels,
    ::testing::Values(Case{"cpu", 2, 7, 24, 3, 50, 128}, Case{"cpu", 2, 64, 128, 2, 256, 256},
                      Case{"cpu", 1, 33, 192, 3, 300, 384}, Case{"reference", 2, 7, 24, 3, 50, 128},
                      Case{"reference", 1, 16, 64, 2, 256, 256}),
    [](const auto& info) { return info.param.name(); });

}  // namespace
