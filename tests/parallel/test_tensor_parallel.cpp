// Tensor parallelism on the in-process communicator (threads as ranks): the sharding plan's
// init equals the slice of the unsharded init bit for bit, and the tp = 2 and tp = 4 models'
// loss and gradients, with and without sequence parallelism, equal the unsharded model's
// (mapped back through the plan) within the fp32 bound of test_gpt: the only difference is
// where the row-parallel sums are split; where no reduction happens (layer 0's ln_1 and its
// column-parallel qkv) the values are bit-identical.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "support/local_group.h"
#include "support/fixtures.h"
#include "support/support.h"

using namespace meshlm;

namespace {

ModelConfig config() { return test::sharded_model(2); }

std::vector<int32_t> tokens(int64_t n, int64_t V, uint64_t seed) { return test::random_tokens(n, V, seed); }

void on_group(int n, const std::function<void(Communicator&)>& f) { test::on_local_group(n, f); }

// Throws naming the first parameter whose gradient slice on this rank differs from the
// unsharded model's (read through the global index) by more than tol, normwise.
void expect_sharded_grads(const Model& m, const Model& whole, double tol, const std::string& what) {
  const float* g_whole = whole.grads().as<float>();
  for (const ParamEntry& e : m.table().entries()) {
    const int64_t base = whole.table().at(e.name).offset;
    double num = 0, den = 0;
    for (int64_t i = 0; i < e.numel(); i++) {
      const double a = m.grads().as<float>()[e.offset + i], b = g_whole[base + e.global_index(i)];
      num += (a - b) * (a - b);
      den += b * b;
    }
    if (std::sqrt(num) > tol * std::sqrt(den) + 1e-30)
      throw Error(what + ": gradient of " + e.name + " off by " + std::to_string(std::sqrt(num / den)) + " relative");
  }
}

}  // namespace

TEST(TensorParallel, ShardedModelEqualsTheUnshardedOne) {
  const ModelConfig c = config();
  auto be = make_cpu_backend();
  Model whole(c, *be);
  whole.init(11);
  const int64_t B = 2, T = 16;
  const auto x = tokens(B * T, c.vocab_size, 1), y = tokens(B * T, c.vocab_size, 2);
  whole.zero_grad();
  const double loss = whole.forward(x.data(), y.data(), B, T, 1.0f);
  whole.backward();
  const double tol = test::fp32_model_bound(c, T);  // both sides fp32 computations of one function
  for (int tp_sp : {2, 4, -2, -4}) {  // negative: with sequence parallelism
    const int tp = std::abs(tp_sp);
    on_group(tp, [&](Communicator& comm) {
      auto rbe = make_cpu_backend();
      Model m(c, *rbe, DType::fp32, test::model_plan(tp, tp_sp < 0), &comm);
      m.init(11);
      const float* p_whole = whole.params().as<float>();
      for (const ParamEntry& e : m.table().entries()) {  // init: exactly the slice
        const int64_t base = whole.table().at(e.name).offset;
        for (int64_t i = 0; i < e.numel(); i++)
          if (m.params().as<float>()[e.offset + i] != p_whole[base + e.global_index(i)])
            throw Error("init of " + e.name + " is not the slice at " + std::to_string(i));
      }
      m.zero_grad();
      const double l = m.forward(x.data(), y.data(), B, T, 1.0f);
      m.backward();
      if (std::fabs(l - loss) > tol * loss) throw Error("loss " + std::to_string(l) + " vs " + std::to_string(loss));
      // Each layer's forward, after its reductions: the replicated (B, T, C) activations of
      // every layer (ln_1, attention output, residual, ln_2, MLP output, residual) equal the
      // unsharded layer's, normwise within the same bound. (Without sequence parallelism, where
      // they are whole on every rank.)
      if (tp_sp > 0) {
        const auto mine = m.tensor_spans(), ref_spans = whole.tensor_spans();
        auto act = [&](const std::vector<Model::TensorSpan>& spans, const std::string& layer, const std::string& name) {
          for (const auto& sp : spans)
            if (sp.layer == layer && sp.kind == "activations" && sp.name == name) return static_cast<const float*>(sp.data);
          throw Error("no activation " + layer + " " + name);
        };
        // Bit-exact where no reduction happens: layer 0's ln_1 output (the embedding's
        // reduction adds one non-zero part to zeros). Its column-parallel qkv, column by column
        // through the plan (c_attn's heads within q, k, v), within the fp32 product's bound
        // gamma_{C+1} sum |x w| twice (the GEMM may block a narrower product differently:
        // oneDNN does on AVX2 CPUs).
        {
          const float *ln1 = act(mine, "h.0", "ln_1"), *ln1_ref = act(ref_spans, "h.0", "ln_1");
          if (std::memcmp(ln1, ln1_ref, size_t(B * T * c.n_embd) * 4) != 0) throw Error("layer 0 ln_1 is not bit-exact");
          const int64_t C = c.n_embd, C3 = 3 * C, C3l = C3 / tp;
          const float *qkv = act(mine, "h.0", "attn.c_attn"), *qkv_ref = act(ref_spans, "h.0", "attn.c_attn");
          const ParamEntry& w = m.table().at("transformer.h.0.attn.c_attn.weight");
          const float* W = p_whole + whole.table().at(w.name).offset;  // (C, 3C)
          const float* bias = p_whole + whole.table().at("transformer.h.0.attn.c_attn.bias").offset;
          for (int64_t n = 0; n < B * T; n++)
            for (int64_t j = 0; j < C3l; j++) {
              const int64_t g = w.global_index(j) % C3;
              double mag = std::fabs(bias[g]);
              for (int64_t k = 0; k < C; k++) mag += std::fabs(double(ln1[n * C + k]) * W[k * C3 + g]);
              if (std::fabs(double(qkv[n * C3l + j]) - qkv_ref[n * C3 + g]) > 2 * test::gamma(C + 1) * mag)
                throw Error("layer 0 qkv (column-parallel) is off at row " + std::to_string(n));
            }
        }
        for (int64_t layer = 0; layer < c.n_layer; layer++) {
          const std::string name = "h." + std::to_string(layer);
          for (const char* which : {"ln_1", "attn.c_proj", "res2", "ln_2", "mlp.c_proj", "output"}) {
            const float *a = act(mine, name, which), *b = act(ref_spans, name, which);
            double num = 0, den = 0;
            for (int64_t i = 0; i < B * T * c.n_embd; i++) {
              num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
              den += double(b[i]) * b[i];
            }
            if (std::sqrt(num) > tol * std::sqrt(den))
              throw Error("tp " + std::to_string(tp) + ": layer " + name + " activation " + which + " off by " +
                          std::to_string(std::sqrt(num / den)));
          }
        }
      }
      expect_sharded_grads(m, whole, tol, "tp " + std::to_string(tp));
    });
  }
}

// Llama over tp ranks against one rank: kv heads split (tp 2 with 2 kv heads), shared (tp 4
// with 2, tp 2 with 1: each kv head replicated on the ranks of its query group, which sum its
// weight gradient), with and without sequence parallelism. Loss and every gradient slice
// within the fp32 bound two computations of one model agree in.
TEST(TensorParallel, LlamaShardedModelEqualsTheUnshardedOne) {
  struct Layout {
    int64_t kv;
    int tp;
    bool sp;
  };
  for (const Layout& lay : {Layout{2, 2, false}, Layout{2, 4, false}, Layout{2, 2, true}, Layout{2, 4, true},
                            Layout{1, 2, false}}) {
    const ModelConfig c = test::llama_model(2, lay.kv);
    auto be = make_cpu_backend();
    Model whole(c, *be);
    whole.init(11);
    const int64_t B = 2, T = 16;
    const auto x = tokens(B * T, c.vocab_size, 1), y = tokens(B * T, c.vocab_size, 2);
    whole.zero_grad();
    const double loss = whole.forward(x.data(), y.data(), B, T, 1.0f);
    whole.backward();
    const double tol = test::fp32_model_bound(c, T);
    const std::string what = "kv " + std::to_string(lay.kv) + " tp " + std::to_string(lay.tp) + (lay.sp ? " sp" : "");
    on_group(lay.tp, [&](Communicator& comm) {
      auto rbe = make_cpu_backend();
      Model m(c, *rbe, DType::fp32, test::model_plan(c, lay.tp, lay.sp), &comm);
      m.init(11);
      m.zero_grad();
      const double l = m.forward(x.data(), y.data(), B, T, 1.0f);
      m.backward();
      if (std::fabs(l - loss) > tol * loss) throw Error(what + ": loss " + std::to_string(l) + " vs " + std::to_string(loss));
      expect_sharded_grads(m, whole, tol, what);
    });
  }
}

TEST(TensorParallel, PlanShapesAndErrors) {
  ModelConfig c = config();
  const ParamTable t = test::gpt2_table(c, 2, 1);
  EXPECT_EQ(t.at("transformer.h.0.attn.c_attn.weight").shape, (Shape{32, 48}));
  EXPECT_EQ(t.at("transformer.h.0.attn.c_proj.weight").shape, (Shape{16, 32}));
  EXPECT_EQ(t.at("transformer.h.0.mlp.c_fc.bias").shape, (Shape{64}));
  EXPECT_EQ(t.at("transformer.h.0.mlp.c_proj.bias").shape, (Shape{32}));  // replicated
  EXPECT_EQ(t.at("transformer.wte.weight").shape, (Shape{64, 32}));       // vocabulary rows
  EXPECT_EQ(t.at("transformer.wte.weight").global_index(0), 64 * 32);    // rank 1: rows 64..127
  EXPECT_EQ(t.at("transformer.wpe.weight").shape, (Shape{16, 32}));       // replicated
  // c_attn columns by heads within each of q, k, v: rank 1's first k column is global 32 + 16.
  const ParamEntry& qkv = t.at("transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(qkv.global_index(0), 16);
  EXPECT_EQ(qkv.global_index(16), 32 + 16);
  EXPECT_EQ(qkv.global_index(48), 96 + 16);  // row 1
  EXPECT_EQ(t.at("transformer.h.0.mlp.c_proj.weight").global_index(0), 64 * 32);
  c.n_head = 3;
  c.n_embd = 24;
  EXPECT_THROW(test::gpt2_table(c, 2, 0), Error);  // 3 heads do not split over 2 ranks
  // Llama, tp 4 with 2 kv heads: ranks 0, 1 share kv head 0; 2, 3 kv head 1.
  const ModelConfig l = test::llama_model(1, 2);
  const ParamTable t2 = param_table(l, test::model_plan(l, 4), 0, 3);
  const ParamEntry& k = t2.at("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(k.shape, (Shape{8, 32}));  // one kv head of 8 channels
  EXPECT_EQ(k.part(), 1);
  EXPECT_EQ(k.global_index(0), 8 * 32);
  EXPECT_FALSE(k.counted_here());  // rank 2 counts it
  EXPECT_EQ(t2.at("model.layers.0.self_attn.q_proj.weight").shape, (Shape{8, 32}));
  EXPECT_EQ(t2.at("model.layers.0.self_attn.o_proj.weight").shape, (Shape{32, 8}));  // columns: row-parallel
  EXPECT_EQ(t2.at("lm_head.weight").shape, (Shape{32, 32}));                          // vocabulary rows
}
