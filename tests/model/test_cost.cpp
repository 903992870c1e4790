// The layers' cost records (model/layer.h Cost) against closed forms and against what the
// model does: the GEMM FLOPs of a training step are 6 x the linear layers' parameters per
// token plus attention's 12 L C T; the forward FLOPs per token of a block and of the LM head
// are GPT-2's 24 C^2 + 4 T C and 2 C Vp (what --pp-layers balanced splits by); the
// tensor-parallel bytes equal the model's own count of what it sent and, without sequence
// parallelism, ((16 L + 8) N C + 12 N) bytes per step; the activation bytes the records say
// are kept equal the bytes the model keeps per micro-batch, for every recompute setting, on
// one rank and on tp 2 with and without sequence parallelism. Shapes are multiples of 32
// elements, so the activation layout adds no alignment padding.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "support/fixtures.h"
#include "support/local_group.h"
#include "support/support.h"

using namespace meshlm;

namespace {

double sum(const std::vector<Cost>& ops, Cost::Kind kind, bool forward_only = false) {
  double s = 0;
  for (const Cost& c : ops)
    if (c.kind == kind && !(forward_only && c.backward)) s += kind == Cost::Kind::gemm ? c.flops() : double(c.bytes);
  return s;
}

TEST(Cost, GemmFlopsFollowTheClosedForms) {
  const ModelConfig c = test::sharded_model(3);
  const int64_t B = 4, T = 16, N = B * T, C = c.n_embd, L = c.n_layer, Vp = c.padded_vocab_size();
  const auto units = unit_costs(c, Plan{}, 0, DType::fp32, B, T);
  ASSERT_EQ(units.size(), size_t(L + 2));  // embedding, blocks, final
  double total = 0;
  for (const UnitCost& u : units) total += sum(u.ops, Cost::Kind::gemm);
  const double linear_params = double(12 * C * C * L + C * Vp);
  EXPECT_EQ(total, double(N) * (6 * linear_params + 12.0 * double(L * C * T)));
  EXPECT_EQ(units[1].forward_flops() / double(N), double(24 * C * C + 4 * T * C));
  EXPECT_EQ(units.back().forward_flops() / double(N), double(2 * C * Vp));
  EXPECT_EQ(units.front().forward_flops(), 0.0);
}

TEST(Cost, ActivationBytesMatchTheModel) {
  const ModelConfig c = test::sharded_model(2);
  const int64_t B = 4, T = 16;
  const auto x = test::random_tokens(B * T, c.vocab_size, 1), y = test::random_tokens(B * T, c.vocab_size, 2);
  for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full})
    for (DType dt : {DType::fp32, DType::bf16}) {
      auto be = make_cpu_backend();
      Model m(c, *be, dt, test::model_plan(1, false, r));
      m.init(1);
      m.forward(x.data(), y.data(), B, T, 1.0f);
      EXPECT_EQ(sum(m.cost(B, T), Cost::Kind::saved), double(m.saved_activation_bytes()))
          << recompute_name(r) << " " << dtype_name(dt);
    }
}

TEST(Cost, TensorParallelBytesMatchWhatTheModelSends) {
  const ModelConfig c = test::sharded_model(2);
  const int64_t B = 4, T = 16, N = B * T, C = c.n_embd, L = c.n_layer;
  const auto x = test::random_tokens(N, c.vocab_size, 3), y = test::random_tokens(N, c.vocab_size, 4);
  for (bool sp : {false, true})
    for (Recompute r : {Recompute::none, Recompute::full})
      test::on_local_group(2, [&](Communicator& tp) {
        auto be = make_cpu_backend();
        Model m(c, *be, DType::fp32, test::model_plan(2, sp, r), &tp);
        m.init(2);
        m.zero_grad();
        m.forward(x.data(), y.data(), B, T, 1.0f);
        m.backward();
        const auto ops = m.cost(B, T);
        const std::string what = std::string(sp ? "sp" : "tp") + " recompute " + recompute_name(r);
        // Full recomputation reruns each block's forward, collectives included.
        double predicted = sum(ops, Cost::Kind::collective);
        if (r == Recompute::full)
          for (const Cost& k : ops)
            if (k.kind == Cost::Kind::collective && !k.backward && k.what.rfind("transformer.h.", 0) == 0)
              predicted += double(k.bytes);
        if (predicted != double(m.tp_bytes())) throw Error(what + ": records " + std::to_string(predicted) +
                                                           " bytes, the model sent " + std::to_string(m.tp_bytes()));
        if (!sp && r == Recompute::none && m.tp_bytes() != (16 * L + 8) * N * C + 12 * N)
          throw Error("the tensor-parallel bytes differ from (16 L + 8) N C + 12 N");
        if (sum(ops, Cost::Kind::saved) != double(m.saved_activation_bytes()))
          throw Error(what + ": saved activation bytes differ");
      });
}

}  // namespace
