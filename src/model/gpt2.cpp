#include "model/gpt2.h"

#include <cmath>

#include "core/error.h"
#include "model/attention.h"
#include "model/embedding.h"
#include "model/layernorm.h"
#include "model/lm_head.h"
#include "model/mlp.h"

namespace meshlm {

std::vector<ShardRule> gpt2_sharding() {
  return {{"transformer.h.*.attn.c_attn.*", Sharding::columns, 3},
          {"transformer.h.*.mlp.c_fc.*", Sharding::columns, 1},
          {"transformer.h.*.c_proj.weight", Sharding::rows, 1},
          {"transformer.wte.weight", Sharding::rows, 1}};
}

namespace {

// x -> x + attn(ln_1(x)) -> (that) + mlp(ln_2(that)).
class Gpt2Block final : public BlockUnit {
 public:
  Gpt2Block(const ModelConfig& cfg, int64_t l)
      : BlockUnit("h." + std::to_string(l)),
        C_(cfg.n_embd),
        ln_1_(prefix(l) + "ln_1", C_, Keep::unless_full, "ln_1"),
        attn_(prefix(l) + "attn", C_, cfg.n_head, proj_std(cfg)),
        ln_2_(prefix(l) + "ln_2", C_, Keep::unless_full, "ln_2"),
        mlp_(prefix(l) + "mlp", C_, proj_std(cfg)) {}
  void declare(std::vector<ParamDecl>& out) const override {
    ln_1_.declare(out, name());
    attn_.declare(out, name());
    ln_2_.declare(out, name());
    mlp_.declare(out, name());
  }
  void bind(const ParamTable& t) override {
    ln_1_.bind(t);
    attn_.bind(t);
    ln_2_.bind(t);
    mlp_.bind(t);
  }
  void plan(ActivationPlanner& p, const Dims& d, bool sp) override {
    ln_1_.plan(p, d);
    attn_.plan(p, d, sp);
    saved_.res2 = p.keep("res2", d.Ns * C_, Keep::unless_full);  // (Ns, C)
    ln_2_.plan(p, d);
    mlp_.plan(p, d, sp);
    saved_.out = p.saved(d.Ns * C_);                              // (Ns, C)
    dln_ = p.scratch("grad.ln", d.Ns * C_);                 // (Ns, C)
  }
  Act output() const override { return saved_.out; }
  std::vector<Linear*> linears() override {
    std::vector<Linear*> v = attn_.linears(), m = mlp_.linears();
    v.insert(v.end(), m.begin(), m.end());
    return v;
  }
  void forward(Ctx& c, const void* x, bool write_output) override {
    const int64_t n = c.d.Ns * C_;
    ln_1_.forward(c, x);
    attn_.forward(c, c.at(ln_1_.output()));
    c.be.residual_forward(c.dt, c.at(saved_.res2), x, c.at(attn_.output()), n);
    ln_2_.forward(c, c.at(saved_.res2));
    mlp_.forward(c, c.at(ln_2_.output()));
    if (write_output) c.be.residual_forward(c.dt, c.at(saved_.out), c.at(saved_.res2), c.at(mlp_.output()), n);
  }
  void recompute_selective(Ctx& c) override {
    attn_.recompute_core(c);
    mlp_.recompute_gelu(c);
  }
  void backward(Ctx& c, const void* x, void* dres) override {
    // dres is d(out): the residual passes it to both branches; each layernorm adds its input's.
    c.zero(dln_, c.d.Ns * C_);
    mlp_.backward(c, c.at(dln_), dres, c.at(ln_2_.output()));
    ln_2_.backward(c, dres, c.at(dln_), c.at(saved_.res2));  // dres is now d(res2)
    c.zero(dln_, c.d.Ns * C_);
    attn_.backward(c, c.at(dln_), dres, c.at(ln_1_.output()));
    ln_1_.backward(c, dres, c.at(dln_), x);  // dres is now d(x)
  }
  void cost(const CostContext& c, std::vector<Cost>& out) const override {
    const int64_t esz = int64_t(dtype_size(c.dt)), n = c.d.Ns * C_;
    ln_1_.cost(c, out);
    attn_.cost(c, out);
    c.memory(out, name() + " residuals", false, 6 * n * esz);
    c.saved(out, name() + " res2", Keep::unless_full, n * esz);
    ln_2_.cost(c, out);
    mlp_.cost(c, out);
    c.saved(out, name() + " output", Keep::always, n * esz);
  }
  void activations(std::vector<std::pair<std::string, Act>>& out) const override {
    out.push_back({"ln_1", ln_1_.output()});
    attn_.activations(out);
    out.push_back({"res2", saved_.res2});
    out.push_back({"ln_2", ln_2_.output()});
    mlp_.activations(out);
    out.push_back({"output", saved_.out});
  }

 private:
  static std::string prefix(int64_t l) { return "transformer.h." + std::to_string(l) + "."; }
  static double proj_std(const ModelConfig& cfg) { return 0.02 / std::sqrt(2.0 * double(cfg.n_layer)); }
  int64_t C_;
  LayerNorm ln_1_;
  Attention attn_;
  LayerNorm ln_2_;
  Mlp mlp_;
  struct Saved {
    Act res2, out;  // (Ns, C) each: the residual stream after attention (full recomputation
                    // rebuilds it) and the block's output (always kept: the next block's input)
  } saved_;
  Act dln_;  // backward scratch
};

// ln_f, then the LM head tied to wte.
class Gpt2Head final : public HeadUnit {
 public:
  explicit Gpt2Head(const ModelConfig& cfg)
      : HeadUnit("final"),
        C_(cfg.n_embd),
        ln_f_("transformer.ln_f", C_, Keep::always, "ln_f"),
        head_(C_, cfg.vocab_size, cfg.padded_vocab_size(),
              Embedding::wte_decl(cfg.vocab_size, cfg.padded_vocab_size(), C_, true), true) {}
  void declare(std::vector<ParamDecl>& out) const override {
    ln_f_.declare(out, name());
    head_.declare(out);
  }
  void bind(const ParamTable& t) override {
    ln_f_.bind(t);
    head_.bind(t);
  }
  void plan(ActivationPlanner& p, const Dims& d, bool sp) override {
    ln_f_.plan(p, d);
    head_.plan(p, d, sp);
    dln_ = p.scratch("grad.ln", d.Ns * C_);
  }
  Act logits() const override { return head_.logits(); }
  double forward(Ctx& c, const void* x, const int32_t* targets, float dloss_scale) override {
    ln_f_.forward(c, x);
    return head_.forward(c, c.at(ln_f_.output()), targets, dloss_scale);
  }
  void backward(Ctx& c, const void* x, void* dx) override {
    c.zero(dln_, c.d.Ns * C_);
    head_.backward(c, c.at(dln_), c.at(ln_f_.output()));
    c.be.zero(dx, size_t(c.d.Ns * C_) * c.esz());
    ln_f_.backward(c, dx, c.at(dln_), x);
  }
  void cost(const CostContext& c, std::vector<Cost>& out) const override {
    ln_f_.cost(c, out);
    head_.cost(c, out);
  }
  void activations(std::vector<std::pair<std::string, Act>>& out) const override {
    out.push_back({"ln_f", ln_f_.output()});
  }

 private:
  int64_t C_;
  LayerNorm ln_f_;
  LmHead head_;
  Act dln_;
};

}  // namespace

DecoderUnits gpt2_units(const ModelConfig& cfg, const StageLayers& stage, int tp) {
  cfg.validate();
  MESHLM_CHECK(cfg.n_head % tp == 0, "tensor parallelism: n_head (" + std::to_string(cfg.n_head) +
                                         ") must be a multiple of tp (" + std::to_string(tp) + ")");
  MESHLM_CHECK(cfg.padded_vocab_size() % tp == 0, "tensor parallelism: the padded vocabulary (" +
                                                      std::to_string(cfg.padded_vocab_size()) +
                                                      ") must split into tp (" + std::to_string(tp) + ") equal parts");
  const int64_t l0 = stage.first_layer, l1 = stage.n_layers < 0 ? cfg.n_layer : l0 + stage.n_layers;
  MESHLM_CHECK(l0 >= 0 && l0 <= l1 && l1 <= cfg.n_layer, "the stage's layers are outside the model");
  DecoderUnits u;
  if (stage.first)
    u.embedding = std::make_unique<Embedding>(cfg.vocab_size, cfg.padded_vocab_size(), cfg.n_embd, cfg.max_seq_len);
  for (int64_t l = l0; l < l1; l++) u.blocks.push_back(std::make_unique<Gpt2Block>(cfg, l));
  if (stage.last) u.head = std::make_unique<Gpt2Head>(cfg);
  return u;
}

}  // namespace meshlm
