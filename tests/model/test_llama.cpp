// The Llama model: Hugging Face LlamaForCausalLM names and shapes, the whole model's gradient
// against double-precision finite differences (grouped-query attention, rotary positions with
// Llama 3.1's scaling, SwiGLU, RMSNorm, an untied and a tied head), the fp32 and 16-bit models
// against a double-precision run of themselves, recomputation, and the clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/family.h"
#include "model/model.h"
#include "model/rope.h"
#include "support/fixtures.h"
#include "train/config.h"
#include "support/support.h"

using namespace meshlm;
using namespace meshlm::test;

namespace {

std::vector<int32_t> tokens(int64_t n, int64_t V, uint64_t seed) { return test::random_tokens(n, V, seed); }

// Normwise relative difference of two gradient tensors.
double normwise(const float* a, const double* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

TEST(Llama, HuggingFaceNamesShapesAndCount) {
  ModelConfig c = llama_model(2);
  const ParamTable t = param_table(c, Plan{}, 0, 0);
  EXPECT_EQ(t.at("model.embed_tokens.weight").shape, (Shape{128, 32}));  // padded; HF (50, 32)
  EXPECT_EQ(t.at("model.embed_tokens.weight").hf_shape, (Shape{50, 32}));
  EXPECT_EQ(t.at("model.layers.1.self_attn.q_proj.weight").shape, (Shape{32, 32}));  // (out, in)
  EXPECT_EQ(t.at("model.layers.1.self_attn.k_proj.weight").shape, (Shape{16, 32}));  // 2 kv heads of 8
  EXPECT_EQ(t.at("model.layers.1.self_attn.v_proj.weight").shape, (Shape{16, 32}));
  EXPECT_EQ(t.at("model.layers.1.self_attn.o_proj.weight").shape, (Shape{32, 32}));
  EXPECT_EQ(t.at("model.layers.0.mlp.gate_proj.weight").shape, (Shape{64, 32}));
  EXPECT_EQ(t.at("model.layers.0.mlp.down_proj.weight").shape, (Shape{32, 64}));
  EXPECT_EQ(t.at("model.layers.0.input_layernorm.weight").shape, (Shape{32}));
  EXPECT_EQ(t.at("model.layers.0.post_attention_layernorm.weight").shape, (Shape{32}));
  EXPECT_EQ(t.at("model.norm.weight").shape, (Shape{32}));
  EXPECT_EQ(t.at("lm_head.weight").hf_shape, (Shape{50, 32}));
  EXPECT_FALSE(t.contains("model.layers.0.self_attn.q_proj.bias"));  // no biases
  // HF's count: V C twice (embedding and head), per layer 2 C^2 + 2 C (C/NH NKV) + 3 C H + 2 C, + C.
  const int64_t C = 32, H = 64, KV = 16, V = 50;
  const int64_t per_layer = 2 * C * C + 2 * C * KV + 3 * C * H + 2 * C;
  EXPECT_EQ(c.num_parameters(), 2 * V * C + 2 * per_layer + C);
  c.tie_embeddings = 1;
  EXPECT_EQ(c.num_parameters(), V * C + 2 * per_layer + C);
  EXPECT_FALSE(param_table(c, Plan{}, 0, 0).contains("lm_head.weight"));
  // Llama's SwiGLU width rule: 8/3 C rounded up to a multiple (Llama 3 8B: 4096 -> 14336 with 1.3x).
  ModelConfig d;
  d.arch = "llama";
  d.n_embd = 768;
  d.ffn_multiple_of = 256;
  EXPECT_EQ(d.ffn_width(), 2048);
  d.n_embd = 4096;
  EXPECT_EQ(d.ffn_width(), 11008);  // Llama 2 7B's
}

TEST(Llama, Llama3RopeScalingMatchesTheDefinition) {
  ModelConfig c = llama_model(1);
  c.n_embd = 4 * 128;  // head size 128, as Llama 3.1 8B
  c.rope_theta = 500000;
  const std::vector<double> plain = rope_inv_freq(c);
  c.rope_scaling = "llama3";
  const std::vector<double> scaled = rope_inv_freq(c);
  ASSERT_EQ(plain.size(), 64u);
  // High frequencies (wavelength < 8192 / 4) kept, low ones (> 8192 / 1) divided by 8.
  EXPECT_EQ(scaled[0], plain[0]);
  EXPECT_DOUBLE_EQ(scaled[63], plain[63] / 8);
  for (size_t i = 0; i < plain.size(); i++) {
    EXPECT_LE(scaled[i], plain[i]);
    EXPECT_GE(scaled[i], plain[i] / 8 * (1 - 1e-15));
  }
  const std::vector<double> t = rope_table(c, 3);
  EXPECT_DOUBLE_EQ(t[(2 * 64 + 5) * 2], std::cos(2 * scaled[5]));
  EXPECT_DOUBLE_EQ(t[(2 * 64 + 5) * 2 + 1], std::sin(2 * scaled[5]));
}

// As Gpt.GradientMatchesFiniteDifferencesInDouble (test::check_gradient_by_finite_differences).
TEST(Llama, GradientMatchesFiniteDifferencesInDouble) {
  for (int variant = 0; variant < 3; variant++) {
    ModelConfig c = llama_model(2, variant == 2 ? 1 : 2);  // GQA, GQA tied + llama3 scaling, MQA
    c.max_seq_len = 8;
    if (variant == 1) {
      c.tie_embeddings = 1;
      c.rope_scaling = "llama3";
      c.rope_original_max_position = 64;  // so the test's positions see every regime
      c.rope_factor = 4;
    }
    auto be = make_reference_backend();
    Model m(c, *be, DType::fp64);
    m.init(3);
    const int64_t B = 2, T = 6;
    EXPECT_GT(check_gradient_by_finite_differences(m, tokens(B * T, c.vocab_size, 3), tokens(B * T, c.vocab_size, 4), B,
                                                   T, "variant " + std::to_string(variant) + " "),
              50);
  }
}

// The fp32 cpu model and the 16-bit ones against the double-precision reference run of the
// same weights, with test_gpt's bounds: 10 (6L+4) sqrt(K) u for fp32 (K the longest reduction)
// and 10 sqrt(6L+4) u16 for 16-bit storage.
TEST(Llama, Fp32AndLowPrecisionMatchDoublePrecisionRun) {
  const ModelConfig c = llama_model(2);
  auto cpu = make_cpu_backend();
  auto ref = make_reference_backend();
  const int64_t B = 3, T = 8;
  auto x = tokens(B * T, c.vocab_size, 5), y = tokens(B * T, c.vocab_size, 6);
  Model m64(c, *ref, DType::fp64);
  m64.init(5);
  m64.zero_grad();
  const double l64 = m64.forward(x.data(), y.data(), B, T, 1.0f);
  m64.backward();
  for (DType dt : {DType::fp32, DType::bf16, DType::fp16}) {
    Model m(c, *cpu, dt);
    m.init(5);
    for (int64_t i = 0; i < m.params().numel(); i++) m.params().as<float>()[i] = float(m64.params().as<double>()[i]);
    m.update_compute_weights();
    m.zero_grad();
    const double l = m.forward(x.data(), y.data(), B, T, 1.0f);
    m.backward();
    const int64_t K = std::max({c.ffn_width(), c.padded_vocab_size(), T, c.n_embd});
    const double u16 = dt == DType::bf16 ? 0x1p-8 : 0x1p-11;
    const double tol = dt == DType::fp32 ? 10 * (6 * c.n_layer + 4) * std::sqrt(double(K)) * kF32Eps
                                         : 10 * std::sqrt(6.0 * double(c.n_layer) + 4) * u16;
    EXPECT_NEAR(l, l64, tol * l64) << dtype_name(dt);
    double worst = 0;
    for (const auto& e : m.table().entries()) {
      const double r = normwise(m.grads().as<float>() + e.offset, m64.grads().as<double>() + e.offset, e.numel());
      worst = std::max(worst, r);
      EXPECT_LE(r, tol) << dtype_name(dt) << " " << e.name;
    }
    std::printf("%s: loss relative error %.2e, worst gradient normwise relative error %.2e (bound %.2e)\n",
                dtype_name(dt), std::fabs(l - l64) / l64, worst, tol);
  }
}

TEST(Llama, RecomputationGivesTheSameGradientsWithLessMemory) {
  const ModelConfig c = llama_model(2);
  auto be = make_cpu_backend();
  const int64_t B = 2, T = 8;
  auto x = tokens(B * T, c.vocab_size, 3), y = tokens(B * T, c.vocab_size, 4);
  for (DType dt : {DType::fp32, DType::bf16}) {
    std::vector<float> ref_grads;
    double ref_loss = 0;
    int64_t previous_bytes = 0;
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full}) {
      Model m(c, *be, dt, model_plan(c, 1, false, r));
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
}

TEST(Llama, ClearErrors) {
  ModelConfig c = llama_model(2);
  c.n_kv_head = 3;  // 4 query heads
  EXPECT_THROW(c.validate(), Error);
  c = llama_model(2);
  c.n_head = 6;
  c.n_embd = 48;
  c.n_kv_head = 2;
  try {
    sharding_rules(c, 3);  // 3 ranks neither divide 2 kv heads nor are a multiple of them
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_kv_head (2) and tp (3)"), std::string::npos) << e.what();
  }
  ModelConfig g;  // gpt2 refuses llama keys
  g.n_kv_head = 2;
  EXPECT_THROW(g.validate(), Error);
  g = ModelConfig{};
  g.tie_embeddings = 0;
  EXPECT_THROW(g.validate(), Error);
  c = llama_model(2);
  c.rope_scaling = "yarn";
  EXPECT_THROW(c.validate(), Error);
}

// The cost records give the FLOPs MFU uses: 6 x the matrices' parameters (padded head) +
// 12 L C T for attention's products, for Llama as for GPT-2.
TEST(Llama, FlopsFromTheCostRecords) {
  const ModelConfig c = llama_model(2);
  const int64_t C = 32, H = 64, KV = 16, Vp = 128, T = 16, L = 2;
  const double matrices = double(L * (2 * C * C + 2 * C * KV + 3 * C * H) + Vp * C);
  EXPECT_DOUBLE_EQ(c.flops_per_token(T), 6 * matrices + 12.0 * L * C * T);
}

// --pp-layers balanced counts the Llama's LM head (its own, untied) on the last stage.
TEST(Llama, BalancedPipelineSplitCountsTheHead) {
  TrainConfig t;
  t.arch = "llama";
  t.n_layer = 4;
  t.n_head = 4;
  t.n_kv_head = 2;
  t.n_embd = 32;
  t.ffn_hidden = 64;
  t.seq_len = 16;
  t.pp = 2;
  t.pp_layers = "balanced";
  t.vocab_size = 256;  // a head of 2 C Vp = 16K FLOPs per token against ~20K per block: 2, 2
  EXPECT_EQ(t.pp_split(), (std::vector<int64_t>{2, 2}));
  t.vocab_size = 50257;  // the head costs ~160 blocks: everything else on the first stage
  EXPECT_EQ(t.pp_split(), (std::vector<int64_t>{3, 1}));
}
