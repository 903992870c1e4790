// The reference kernels, instantiated in double, against central finite differences: for a
// random linear functional L = sum_i r_i out_i, each backward kernel's gradient must equal
// (L(x + h e) - L(x - h e)) / 2h. With h = 1e-5 the truncation error is O(h^2 f''') ~ 1e-10
// and the rounding error O(eps / h) ~ 1e-11, so 1e-7 relative (to the gradient's scale) is
// loose by three orders of magnitude yet tight enough to catch any wrong term.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "backend/reference/kernels.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;
namespace ref = meshlm::reference;

namespace {

constexpr double kH = 1e-5, kTol = 1e-7;

// Checks d(sum r . f(x)) / dx against `analytic` on every element of x (or `stride` of them).
void check_fd(std::vector<double>& x, const std::function<double()>& loss,
              const std::vector<double>& analytic, const char* what, int64_t stride = 1) {
  double scale = 1e-12;
  for (double g : analytic) scale = std::max(scale, std::fabs(g));
  for (size_t i = 0; i < x.size(); i += stride) {
    const double keep = x[i];
    x[i] = keep + kH;
    const double lp = loss();
    x[i] = keep - kH;
    const double lm = loss();
    x[i] = keep;
    const double fd = (lp - lm) / (2 * kH);
    ASSERT_NEAR(analytic[i], fd, kTol * scale) << what << "[" << i << "]";
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

TEST(FiniteDifferences, Matmul) {
  const int64_t N = 5, C = 7, OC = 6;
  for (WeightLayout layout : {WeightLayout::in_out, WeightLayout::out_in}) {
    auto x = random_values(N * C, 1), w = random_values(C * OC, 2), b = random_values(OC, 3), r = random_values(N * OC, 4);
    std::vector<double> out(N * OC), dx(N * C, 0), dw(C * OC, 0), db(OC, 0);
    auto loss = [&] {
      ref::matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC, layout);
      return dot(out, r);
    };
    ref::matmul_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, C, OC, layout);
    check_fd(x, loss, dx, "dinp");
    check_fd(w, loss, dw, "dweight");
    check_fd(b, loss, db, "dbias");
  }
}

TEST(FiniteDifferences, LayerNorm) {
  const int64_t N = 4, C = 9;
  auto x = random_values(N * C, 5, -2, 2), w = random_values(C, 6), b = random_values(C, 7), r = random_values(N * C, 8);
  std::vector<double> out(N * C), mean(N), rstd(N), dx(N * C, 0), dw(C, 0), db(C, 0);
  auto loss = [&] {
    ref::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, r);
  };
  loss();
  ref::layernorm_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  check_fd(x, loss, dx, "dinp");
  check_fd(w, loss, dw, "dweight");
  check_fd(b, loss, db, "dbias");
}

TEST(FiniteDifferences, Attention) {
  const int64_t B = 2, T = 5, C = 8, NH = 2;
  const AttentionShape a{B, T, NH, NH, C / NH, 3 * C, 3 * C};  // q, k, v side by side
  auto qkv = random_values(B * T * 3 * C, 9, -1.5, 1.5), r = random_values(B * T * C, 10);
  std::vector<double> out(B * T * C), lse(B * NH * T), dqkv(B * T * 3 * C, 0);
  const double* q = qkv.data();
  auto loss = [&] {
    ref::attention_forward(out.data(), lse.data(), q, q + C, q + 2 * C, a);
    return dot(out, r);
  };
  loss();
  double* d = dqkv.data();
  ref::attention_backward(d, d + C, d + 2 * C, r.data(), q, q + C, q + 2 * C, out.data(), lse.data(), a);
  check_fd(qkv, loss, dqkv, "dqkv");
}

TEST(FiniteDifferences, GroupedQueryAttention) {
  const int64_t B = 2, T = 5, NH = 4, NKV = 2, HS = 3, C = NH * HS, KV = NKV * HS;
  const AttentionShape a{B, T, NH, NKV, HS, C, KV};  // three buffers
  auto q = random_values(B * T * C, 40, -1.5, 1.5), k = random_values(B * T * KV, 41, -1.5, 1.5),
       v = random_values(B * T * KV, 42), r = random_values(B * T * C, 43);
  std::vector<double> out(B * T * C), lse(B * NH * T), dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
  auto loss = [&] {
    ref::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), a);
    return dot(out, r);
  };
  loss();
  ref::attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), out.data(),
                          lse.data(), a);
  check_fd(q, loss, dq, "dq");
  check_fd(k, loss, dk, "dk");
  check_fd(v, loss, dv, "dv");
}

TEST(FiniteDifferences, RmsNorm) {
  const int64_t N = 4, C = 9;
  auto x = random_values(N * C, 44, -2, 2), w = random_values(C, 45), r = random_values(N * C, 46);
  std::vector<double> out(N * C), rstd(N), dx(N * C, 0), dw(C, 0);
  auto loss = [&] {
    ref::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
    return dot(out, r);
  };
  loss();
  ref::rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C);
  check_fd(x, loss, dx, "dinp");
  check_fd(w, loss, dw, "dweight");
}

TEST(FiniteDifferences, RopeBackwardIsTheTranspose) {
  const int64_t B = 1, T = 3, H = 2, HS = 4, n = B * T * H * HS;
  std::vector<double> cs(T * HS);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < HS / 2; i++) {
      cs[(t * HS / 2 + i) * 2] = std::cos(0.7 * double(t * (i + 1)));
      cs[(t * HS / 2 + i) * 2 + 1] = std::sin(0.7 * double(t * (i + 1)));
    }
  auto x = random_values(n, 47), r = random_values(n, 48);
  auto loss = [&] {
    auto y = x;
    ref::rope_rotate(y.data(), cs.data(), B, T, H, HS, +1);
    return dot(y, r);
  };
  auto dx = r;
  ref::rope_rotate(dx.data(), cs.data(), B, T, H, HS, -1);
  check_fd(x, loss, dx, "dx");
}

TEST(FiniteDifferences, SwiGlu) {
  const int64_t n = 64;
  auto g = random_values(n, 49, -5, 5), up = random_values(n, 50), r = random_values(n, 51);
  std::vector<double> out(n), dg(n, 0), du(n, 0);
  auto loss = [&] {
    ref::swiglu_forward(out.data(), g.data(), up.data(), n);
    return dot(out, r);
  };
  ref::swiglu_backward(dg.data(), du.data(), r.data(), g.data(), up.data(), n);
  check_fd(g, loss, dg, "dgate");
  check_fd(up, loss, du, "dup");
}

TEST(FiniteDifferences, Gelu) {
  const int64_t n = 64;
  auto x = random_values(n, 11, -5, 5), r = random_values(n, 12);
  std::vector<double> out(n), dx(n, 0);
  auto loss = [&] {
    ref::gelu_forward(out.data(), x.data(), n);
    return dot(out, r);
  };
  ref::gelu_backward(dx.data(), x.data(), r.data(), n);
  check_fd(x, loss, dx, "dinp");
}

TEST(FiniteDifferences, Embedding) {
  const int64_t B = 2, T = 3, C = 4, V = 5;
  std::vector<int32_t> tok = {1, 4, 1, 0, 2, 4};
  auto wte = random_values(V * C, 13), wpe = random_values(T * C, 14), r = random_values(B * T * C, 15);
  std::vector<double> out(B * T * C), dte(V * C, 0), dpe(T * C, 0);
  auto loss = [&] {
    ref::embedding_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, r);
  };
  ref::embedding_backward(dte.data(), dpe.data(), r.data(), tok.data(), B, T, C);
  check_fd(wte, loss, dte, "dwte");
  check_fd(wpe, loss, dpe, "dwpe");
}

TEST(FiniteDifferences, CrossEntropy) {
  const int64_t N = 3, V = 7, Vp = 8;
  auto logits = random_values(N * Vp, 16, -3, 3);
  std::vector<int32_t> tgt = {0, 6, 3};
  const double dloss = 1.0 / N;
  auto loss = [&] {
    std::vector<double> l(N), lg = logits;
    ref::crossentropy_forward_backward(l.data(), lg.data(), tgt.data(), 0.0, N, V, Vp);
    return dloss * (l[0] + l[1] + l[2]);
  };
  std::vector<double> losses(N), grad = logits;
  ref::crossentropy_forward_backward(losses.data(), grad.data(), tgt.data(), dloss, N, V, Vp);
  check_fd(logits, loss, grad, "dlogits");  // includes the padding column: gradient 0
}

}  // namespace
