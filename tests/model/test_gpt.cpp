// The GPT-2 model: Hugging Face names and shapes, initialisation, the whole model's gradient
// against double-precision finite differences, and the fp32 model against a double-precision
// run of itself (same weights, same tokens).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/params.h"
#include "precision/fp8_recipe.h"
#include "support/fixtures.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;

namespace {

ModelConfig tiny_config() { return tiny_model(50); }  // V 50 pads to 128

std::vector<int32_t> tokens(int64_t n, int64_t V, uint64_t seed) { return test::random_tokens(n, V, seed); }

TEST(Gpt, HuggingFaceNamesShapesAndCount) {
  ModelConfig c;
  c.n_layer = 12;
  c.n_head = 12;
  c.n_embd = 768;
  c.max_seq_len = 1024;
  c.vocab_size = 50257;
  EXPECT_EQ(c.num_parameters(), 124439808);  // GPT2LMHeadModel("gpt2").num_parameters()
  EXPECT_EQ(c.padded_vocab_size(), 50304);
  const ParamTable t = gpt2_table(c);
  EXPECT_EQ(t.entries().front().name, "transformer.wte.weight");
  EXPECT_EQ(t.entries().front().hf_shape, (Shape{50257, 768}));
  EXPECT_EQ(t.at("transformer.h.0.attn.c_attn.weight").shape, (Shape{768, 2304}));  // Conv1D (in, out)
  EXPECT_EQ(t.at("transformer.h.11.mlp.c_proj.weight").shape, (Shape{3072, 768}));
  EXPECT_EQ(t.at("transformer.ln_f.bias").shape, (Shape{768}));
  int64_t hf_total = 0;
  for (const auto& e : t.entries()) hf_total += e.hf_numel();
  EXPECT_EQ(hf_total, c.num_parameters());
  EXPECT_EQ(t.entries().size(), 2u + 12u * 12u + 2u);
}

TEST(Gpt, InitIsDeterministicAndFollowsGpt2) {
  ModelConfig c = tiny_config();
  c.n_embd = 64;
  auto be = make_cpu_backend();
  Model a(c, *be), b(c, *be);
  a.init(7);
  b.init(7);
  EXPECT_EQ(0, std::memcmp(a.params().data(), b.params().data(), a.params().nbytes()));
  b.init(8);
  EXPECT_NE(0, std::memcmp(a.params().data(), b.params().data(), a.params().nbytes()));
  const float* p = a.params().as<float>();
  auto stats = [&](const std::string& name) {
    const auto& e = a.table().at(name);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < e.hf_numel(); i++) {
      s += p[e.offset + i];
      s2 += double(p[e.offset + i]) * p[e.offset + i];
    }
    return std::make_pair(s / e.hf_numel(), std::sqrt(s2 / e.hf_numel()));
  };
  // std of n normal samples: relative standard error 1/sqrt(2n); allow 5 of them.
  auto [m1, sd1] = stats("transformer.h.0.mlp.c_fc.weight");  // 64 x 256
  EXPECT_NEAR(sd1, 0.02, 0.02 * 5 / std::sqrt(2.0 * 64 * 256));
  auto [m2, sd2] = stats("transformer.h.1.attn.c_proj.weight");  // residual: 0.02 / sqrt(2L)
  EXPECT_NEAR(sd2, 0.02 / std::sqrt(4.0), 0.01 * 5 / std::sqrt(2.0 * 64 * 64));
  const auto& ln = a.table().at("transformer.h.0.ln_1.weight");
  for (int64_t i = 0; i < ln.numel(); i++) EXPECT_EQ(p[ln.offset + i], 1.0f);
  const auto& bias = a.table().at("transformer.h.0.attn.c_attn.bias");
  for (int64_t i = 0; i < bias.numel(); i++) EXPECT_EQ(p[bias.offset + i], 0.0f);
  const auto& wte = a.table().at("transformer.wte.weight");
  for (int64_t i = wte.hf_numel(); i < wte.numel(); i++) ASSERT_EQ(p[wte.offset + i], 0.0f) << "padding row";
  // Element i of a parameter depends only on (seed, name, i): the value a shard would compute.
  const auto& w = a.table().at("transformer.h.0.mlp.c_fc.weight");
  EXPECT_EQ(p[w.offset + 100], float(0.02 * normal01(7, hash_name(w.name), 100)));
}

// Model::init draws 2^22 elements at a time: a model of several slices (7.4M parameters) holds
// what init_params draws into one buffer of the whole table.
TEST(Gpt, InitInSlicesEqualsTheWholeDraw) {
  ModelConfig c = tiny_config();
  c.n_layer = 1;
  c.n_embd = 512;
  c.vocab_size = 8192;
  auto be = make_cpu_backend();
  Model m(c, *be);
  ASSERT_GT(m.params().numel(), int64_t(1) << 22);  // two slices
  m.init(11);
  Tensor whole({m.table().total()}, DType::fp32);  // [P]
  init_params(m.table(), 11, whole.view());
  EXPECT_EQ(0, std::memcmp(m.params().data(), whole.data(), whole.nbytes()));
}

TEST(Gpt, InitialLossIsNearLogV) {
  ModelConfig c = tiny_config();
  auto be = make_cpu_backend();
  Model m(c, *be);
  m.init(1);
  auto x = tokens(4 * 8, c.vocab_size, 1), y = tokens(4 * 8, c.vocab_size, 2);
  // Small init: logits near 0, so the loss is near log(V) (within a few percent).
  EXPECT_NEAR(m.forward(x.data(), y.data(), 4, 8), std::log(double(c.vocab_size)), 0.1);
}

// The whole model in double precision on the reference backend: backward() against central
// finite differences of the loss, for a spread of elements of every parameter. The loss is
// smooth (no dropout, GELU tanh), so h = 1e-5 gives ~1e-10 truncation error.
TEST(Gpt, GradientMatchesFiniteDifferencesInDouble) {
  const ModelConfig c = tiny_config();
  auto be = make_reference_backend();
  Model m(c, *be, DType::fp64);
  m.init(3);
  const int64_t B = 2, T = 6;
  EXPECT_GT(check_gradient_by_finite_differences(m, tokens(B * T, c.vocab_size, 3), tokens(B * T, c.vocab_size, 4), B, T),
            100);
  const double* g = m.grads().as<double>();
  // Padded vocabulary rows of the tied embedding never receive gradient.
  const auto& wte = m.table().at("transformer.wte.weight");
  for (int64_t i = wte.hf_numel(); i < wte.numel(); i++) ASSERT_EQ(g[wte.offset + i], 0.0);
}

// fp32 on the fast backend against fp64 on the reference backend from identical weights.
// Tolerance: each value passes through ~6L+4 kernels, each a reduction of length at most
// K = max(4C, Vp, T). Treating rounding errors as independent (Higham & Mary, SIAM J. Sci.
// Comput. 2019), a K-term sum's relative error is below lambda sqrt(K) u with overwhelming
// probability for lambda = 10; chained through 6L+4 kernels whose condition numbers are O(1)
// at this small init, the normwise relative error of each gradient stays below
// 10 (6L+4) sqrt(K) u (elementwise bounds are meaningless for entries that cancel to ~0).
// Measured: ~3e-7 against this bound of ~1.5e-4.
TEST(Gpt, Fp32MatchesDoublePrecisionRun) {
  ModelConfig c = tiny_config();
  c.n_embd = 32;
  auto cpu = make_cpu_backend();
  auto ref = make_reference_backend();
  Model m32(c, *cpu, DType::fp32), m64(c, *ref, DType::fp64);
  m32.init(5);
  for (int64_t i = 0; i < m32.params().numel(); i++) m64.params().as<double>()[i] = m32.params().as<float>()[i];
  const int64_t B = 3, T = 8;
  auto x = tokens(B * T, c.vocab_size, 5), y = tokens(B * T, c.vocab_size, 6);
  m32.zero_grad();
  m64.zero_grad();
  const double l32 = m32.forward(x.data(), y.data(), B, T, 1.0f);
  const double l64 = m64.forward(x.data(), y.data(), B, T, 1.0f);
  m32.backward();
  m64.backward();
  const int64_t K = std::max({4 * c.n_embd, c.padded_vocab_size(), T});
  const double tol = 10 * (6 * c.n_layer + 4) * std::sqrt(double(K)) * kF32Eps;
  EXPECT_NEAR(l32, l64, tol * l64);
  for (const auto& e : m32.table().entries()) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < e.numel(); i++) {
      const double a = m32.grads().as<float>()[e.offset + i], b = m64.grads().as<double>()[e.offset + i];
      num += (a - b) * (a - b);
      den += b * b;
    }
    EXPECT_LE(std::sqrt(num), tol * std::sqrt(den) + 1e-30) << e.name << " relative error " << std::sqrt(num / den);
  }
}

TEST(Gpt, AccumulatedMicroBatchesEqualOneBatch) {
  const ModelConfig c = tiny_config();
  auto be = make_reference_backend();  // double: compare without fp32 noise
  Model a(c, *be, DType::fp64), b(c, *be, DType::fp64);
  a.init(11);
  b.init(11);
  const int64_t T = 8;
  auto x = tokens(4 * T, c.vocab_size, 7), y = tokens(4 * T, c.vocab_size, 8);
  a.zero_grad();
  const double la = a.forward(x.data(), y.data(), 4, T, 1.0f);
  a.backward();
  b.zero_grad();
  double lb = 0;
  for (int k = 0; k < 2; k++) {
    lb += b.forward(x.data() + k * 2 * T, y.data() + k * 2 * T, 2, T, 0.5f) / 2;
    b.backward();
  }
  EXPECT_NEAR(la, lb, 1e-13);
  for (int64_t i = 0; i < a.grads().numel(); i++)
    ASSERT_NEAR(a.grads().as<double>()[i], b.grads().as<double>()[i], 1e-15) << i;
}

TEST(Gpt, RejectsBadInput) {
  const ModelConfig c = tiny_config();
  auto be = make_cpu_backend();
  Model m(c, *be);
  m.init(1);
  std::vector<int32_t> x(8, 1), y(8, 1);
  x[3] = int32_t(c.vocab_size);
  EXPECT_THROW(m.forward(x.data(), y.data(), 1, 8), Error);
  x[3] = 0;
  EXPECT_THROW(m.forward(x.data(), y.data(), 1, 9), Error);  // T > max_seq_len
  ModelConfig bad = c;
  bad.n_head = 3;
  EXPECT_THROW(Model(bad, *be), Error);
  EXPECT_THROW(Model(c, *be, DType::fp64), Error);  // the cpu backend runs fp32 only
}

}  // namespace

// The 16-bit models (bf16, fp16 storage of weights and activations, fp32 arithmetic) against
// the double-precision run of the same weights. Every stored activation and every compute
// weight carries one rounding of relative size u16 = 2^-(p+1) (p mantissa bits); those
// independent roundings add in quadrature through the 6L+4 kernels of a pass (condition
// numbers O(1) at this small init), so the normwise relative error of the loss and of each
// gradient stays below lambda sqrt(6L+4) u16 with lambda = 10, as in the fp32 test; the fp32
// arithmetic's own share is ~2^-13 times smaller and disappears in it. Measured (worst
// gradient): bf16 7.9e-3 against a bound of 0.16, fp16 9.6e-4 against 0.02; fp8 (below)
// 0.14 against 0.5.
TEST(Gpt, LowPrecisionMatchesDoublePrecisionRun) {
  ModelConfig c = tiny_config();
  c.n_embd = 32;
  auto cpu = make_cpu_backend();
  auto ref = make_reference_backend();
  Model m64(c, *ref, DType::fp64);
  {
    Model init(c, *cpu, DType::fp32);
    init.init(5);
    for (int64_t i = 0; i < init.params().numel(); i++) m64.params().as<double>()[i] = init.params().as<float>()[i];
  }
  const int64_t B = 3, T = 8;
  auto x = tokens(B * T, c.vocab_size, 5), y = tokens(B * T, c.vocab_size, 6);
  m64.zero_grad();
  const double l64 = m64.forward(x.data(), y.data(), B, T, 1.0f);
  m64.backward();
  for (DType dt : {DType::bf16, DType::fp16}) {
    for (bool fp8 : {false, true}) {
      if (fp8 && dt != DType::bf16) continue;
      Model m(c, *cpu, dt);
      std::unique_ptr<Fp8Recipe> recipe;
      if (fp8) recipe = std::make_unique<Fp8Recipe>(m, Fp8ScalingConfig{});
      // The master weights of the double run, rounded to fp32 (they were fp32 values already).
      for (int64_t i = 0; i < m.params().numel(); i++) m.params().as<float>()[i] = float(m64.params().as<double>()[i]);
      m.update_compute_weights();
      m.zero_grad();
      const double l = m.forward(x.data(), y.data(), B, T, 1.0f);
      m.backward();
      const FloatFormat f = float_format(dt);
      const double u16 = std::ldexp(1.0, -f.man_bits - 1);
      // fp8: each block product sees its output gradient rounded to e5m2 (u = 2^-3) and its
      // operands to e4m3 (2^-4): first order, a gradient is off by at most u5 + 2 u4 = 1/4 of
      // its norm per product; allow twice that for the chain.
      const double tol = fp8 ? 0.5 : 10 * std::sqrt(6.0 * double(c.n_layer) + 4) * u16;
      EXPECT_NEAR(l, l64, tol * l64) << dtype_name(dt) << (fp8 ? " fp8" : "");
      double worst = 0;
      for (const auto& e : m.table().entries()) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < e.numel(); i++) {
          const double a = m.grads().as<float>()[e.offset + i], b = m64.grads().as<double>()[e.offset + i];
          num += (a - b) * (a - b);
          den += b * b;
        }
        if (den == 0) continue;  // padded vocabulary rows
        worst = std::max(worst, std::sqrt(num / den));
        EXPECT_LE(std::sqrt(num), tol * std::sqrt(den)) << dtype_name(dt) << " " << e.name;
      }
      std::printf("%s%s: loss relative error %.2e, worst gradient normwise relative error %.2e (bound %.2e)\n",
                  dtype_name(dt), fp8 ? " fp8" : "", std::fabs(l - l64) / l64, worst, tol);
    }
  }
}

// backward's hooks report ever smaller offsets, unit by unit, ending at 0: what the
// data-parallel buckets rely on to start reducing early. The gradient is the same either way.
TEST(Gpt, BackwardReportsFinalGradientsFromTheEnd) {
  ModelConfig c = tiny_config();
  auto be = make_cpu_backend();
  Model m(c, *be);
  m.init(3);
  const int64_t B = 2, T = 8;
  auto x = tokens(B * T, c.vocab_size, 1), y = tokens(B * T, c.vocab_size, 2);
  m.zero_grad();
  m.forward(x.data(), y.data(), B, T, 1.0f);
  std::vector<int64_t> offsets;
  std::vector<std::vector<float>> seen;  // grads [o, P) when reported final
  const float* g = m.grads().as<float>();
  const int64_t P = m.grads().numel();
  struct Record final : UnitHooks {
    std::function<void(int64_t)> f;
    void grads_final_from(int64_t o) override { f(o); }
  } hooks;
  hooks.f = [&](int64_t o) {
    offsets.push_back(o);
    seen.emplace_back(g + o, g + P);
  };
  m.set_hooks(&hooks);
  m.backward();
  m.set_hooks(nullptr);
  std::vector<float> with_hook(g, g + P);
  for (size_t k = 0; k < offsets.size(); k++)  // nothing reported final changed afterwards
    EXPECT_EQ(0, std::memcmp(seen[k].data(), g + offsets[k], seen[k].size() * 4)) << "offset " << offsets[k];
  ASSERT_EQ(offsets.size(), size_t(c.n_layer + 2));  // ln_f, each block, then the embeddings
  EXPECT_EQ(offsets.front(), m.table().at("transformer.ln_f.weight").offset);
  EXPECT_EQ(offsets.back(), 0);
  for (size_t i = 1; i < offsets.size(); i++) EXPECT_LT(offsets[i], offsets[i - 1]);
  m.zero_grad();
  m.forward(x.data(), y.data(), B, T, 1.0f);
  m.backward();
  EXPECT_EQ(0, std::memcmp(with_hook.data(), m.grads().data(), with_hook.size() * 4));
}

TEST(Gpt, RecomputationGivesTheSameGradientsWithLessMemory) {
  // Recomputed activations are the same kernels on the same inputs: loss and gradients are
  // bit-identical to keeping everything, in fp32 and bf16, while each setting keeps less.
  const ModelConfig c = tiny_config();
  auto be = make_cpu_backend();
  const int64_t B = 2, T = 8;
  auto x = tokens(B * T, c.vocab_size, 3), y = tokens(B * T, c.vocab_size, 4);
  for (DType dt : {DType::fp32, DType::bf16}) {
    std::vector<float> ref_grads;
    double ref_loss = 0;
    int64_t previous_bytes = 0;
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full}) {
      Model m(c, *be, dt, model_plan(1, false, r));
      m.init(21);
      m.zero_grad();
      const double loss = m.forward(x.data(), y.data(), B, T, 1.0f);
      m.backward();
      std::vector<float> g(m.grads().as<float>(), m.grads().as<float>() + m.grads().numel());
      if (r == Recompute::none) {
        ref_grads = g;
        ref_loss = loss;
      } else {
        EXPECT_EQ(loss, ref_loss) << recompute_name(r);
        EXPECT_TRUE(g == ref_grads) << recompute_name(r) << " changed the gradients";
        EXPECT_LT(m.saved_activation_bytes(), previous_bytes) << recompute_name(r);
      }
      previous_bytes = m.saved_activation_bytes();
    }
  }
  EXPECT_THROW(recompute_from_name("some"), Error);
}
