// The pre-norm residual block both families use, as a composition of three layers:
//   x -> res2 = x + mixer(norm1(x)) -> out = res2 + ffn(norm2(res2))
// GPT-2: LayerNorm, causal self-attention, the GELU MLP; Llama: RMSNorm, grouped-query attention
// with rotary positions, the SwiGLU MLP. The layers' interface (what this template calls):
//   Norm:  declare(out, group), bind(table), plan(p, d), output(), forward(c, x),
//          forward_add(c, sum, a, b) (sum = a + b, then forward(sum)), backward(c, dinp, dout, inp),
//          cost(c, out)
//   Mixer, Ffn: declare, bind, plan(p, d, sp), output(), linears(), forward(c, x),
//          recompute_selective(c), backward(c, dx, dout, x), cost, activations(out)
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "model/lm_head.h"
#include "model/unit.h"

namespace meshlm {

template <class Norm, class Mixer, class Ffn>
class PreNormBlock final : public BlockUnit {
 public:
  struct Parts {
    Norm norm1;
    Mixer mixer;
    Norm norm2;
    Ffn ffn;
    std::string norm1_label, norm2_label;  // the norms' activations in the numerics report ("ln_1", "ln_2")
  };
  PreNormBlock(int64_t layer, int64_t C, Parts parts)
      : BlockUnit("h." + std::to_string(layer)), C_(C), p_(std::move(parts)) {}

  void declare(std::vector<ParamDecl>& out) const override {
    p_.norm1.declare(out, name());
    p_.mixer.declare(out, name());
    p_.norm2.declare(out, name());
    p_.ffn.declare(out, name());
  }
  void bind(const ParamTable& t) override {
    p_.norm1.bind(t);
    p_.mixer.bind(t);
    p_.norm2.bind(t);
    p_.ffn.bind(t);
  }
  void plan(ActivationPlanner& p, const Dims& d, bool sp) override {
    p_.norm1.plan(p, d);
    p_.mixer.plan(p, d, sp);
    saved_.res2 = p.keep("res2", d.Ns * C_, Keep::unless_full);  // (Ns, C)
    p_.norm2.plan(p, d);
    p_.ffn.plan(p, d, sp);
    saved_.out = p.saved(d.Ns * C_);                  // (Ns, C)
    dln_ = p.scratch("grad.ln", d.Ns * C_);           // (Ns, C)
  }
  Act output() const override { return saved_.out; }
  std::vector<Linear*> linears() override {
    std::vector<Linear*> v = p_.mixer.linears(), m = p_.ffn.linears();
    v.insert(v.end(), m.begin(), m.end());
    return v;
  }
  void forward(Ctx& c, const void* x, bool write_output) override {
    const int64_t n = c.d.Ns * C_;
    p_.norm1.forward(c, x);
    p_.mixer.forward(c, c.at(p_.norm1.output()));
    p_.norm2.forward_add(c, c.at(saved_.res2), x, c.at(p_.mixer.output()));  // res2 = x + mixer, normed
    p_.ffn.forward(c, c.at(p_.norm2.output()));
    if (write_output) c.be.residual_forward(c.dt, c.at(saved_.out), c.at(saved_.res2), c.at(p_.ffn.output()), n);
  }
  void recompute_selective(Ctx& c) override {
    p_.mixer.recompute_selective(c);
    p_.ffn.recompute_selective(c);
  }
  void backward(Ctx& c, const void* x, void* dres) override {
    // dres is d(out): the residual passes it to both branches; each norm adds its input's.
    c.zero(dln_, c.d.Ns * C_);
    p_.ffn.backward(c, c.at(dln_), dres, c.at(p_.norm2.output()));
    p_.norm2.backward(c, dres, c.at(dln_), c.at(saved_.res2));  // dres is now d(res2)
    c.zero(dln_, c.d.Ns * C_);
    p_.mixer.backward(c, c.at(dln_), dres, c.at(p_.norm1.output()));
    p_.norm1.backward(c, dres, c.at(dln_), x);  // dres is now d(x)
  }
  void cost(const CostContext& c, std::vector<Cost>& out) const override {
    const int64_t esz = int64_t(dtype_size(c.dt)), n = c.d.Ns * C_;
    p_.norm1.cost(c, out);
    p_.mixer.cost(c, out);
    c.memory(out, name() + " residuals", false, 6 * n * esz);
    c.saved(out, name() + " res2", Keep::unless_full, n * esz);
    p_.norm2.cost(c, out);
    p_.ffn.cost(c, out);
    c.saved(out, name() + " output", Keep::always, n * esz);
  }
  void activations(std::vector<std::pair<std::string, Act>>& out) const override {
    out.push_back({p_.norm1_label, p_.norm1.output()});
    p_.mixer.activations(out);
    out.push_back({"res2", saved_.res2});
    out.push_back({p_.norm2_label, p_.norm2.output()});
    p_.ffn.activations(out);
    out.push_back({"output", saved_.out});
  }

 private:
  int64_t C_;
  Parts p_;
  struct Saved {
    Act res2, out;  // (Ns, C) each: the residual stream after the mixer (full recomputation
                    // rebuilds it) and the block's output (always kept: the next block's input)
  } saved_;
  Act dln_;  // backward scratch
};

// The final norm, then the LM head and its loss (tied to the token embedding or its own).
template <class Norm>
class NormHead final : public HeadUnit {
 public:
  NormHead(int64_t C, Norm norm, LmHead head, std::string norm_label)
      : HeadUnit("final"), C_(C), norm_(std::move(norm)), head_(std::move(head)), label_(std::move(norm_label)) {}
  void declare(std::vector<ParamDecl>& out) const override {
    norm_.declare(out, name());
    head_.declare(out);
  }
  void bind(const ParamTable& t) override {
    norm_.bind(t);
    head_.bind(t);
  }
  void plan(ActivationPlanner& p, const Dims& d, bool sp) override {
    norm_.plan(p, d);
    head_.plan(p, d, sp);
    dln_ = p.scratch("grad.ln", d.Ns * C_);
  }
  Act logits() const override { return head_.logits(); }
  std::vector<Linear*> linears() override { return {&head_.linear()}; }
  double forward(Ctx& c, const void* x, const int32_t* targets, float dloss_scale) override {
    norm_.forward(c, x);
    return head_.forward(c, c.at(norm_.output()), targets, dloss_scale);
  }
  void backward(Ctx& c, const void* x, void* dx) override {
    c.zero(dln_, c.d.Ns * C_);
    head_.backward(c, c.at(dln_), c.at(norm_.output()));
    c.be.zero(dx, size_t(c.d.Ns * C_) * c.esz());
    norm_.backward(c, dx, c.at(dln_), x);
  }
  void cost(const CostContext& c, std::vector<Cost>& out) const override {
    norm_.cost(c, out);
    head_.cost(c, out);
  }
  void activations(std::vector<std::pair<std::string, Act>>& out) const override {
    out.push_back({label_, norm_.output()});
  }

 private:
  int64_t C_;
  Norm norm_;
  LmHead head_;
  std::string label_;
  Act dln_;
};

}  // namespace meshlm
