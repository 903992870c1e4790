#include "model/swiglu_mlp.h"

namespace meshlm {

namespace {
LinearSpec projection(const std::string& prefix, const char* name, int64_t in, int64_t out, bool entry_shared) {
  LinearSpec s{prefix + "." + name, in, out, 0.02, false, WeightLayout::out_in, "", false, Keep::unless_full, name};
  s.entry_shared = entry_shared;
  return s;
}
}  // namespace

SwiGluMlp::SwiGluMlp(const std::string& prefix, int64_t C, int64_t H)
    : gate_(projection(prefix, "gate_proj", C, H, false)),
      up_(projection(prefix, "up_proj", C, H, true)),
      down_(projection(prefix, "down_proj", H, C, false)) {}

void SwiGluMlp::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  for (const Linear* l : {&gate_, &up_, &down_}) l->declare(out, group);
}

void SwiGluMlp::bind(const ParamTable& table) {
  for (Linear* l : {&gate_, &up_, &down_}) l->bind(table);
  H_ = gate_.local_out();
}

void SwiGluMlp::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  gate_.plan(p, d, sp);                                                // (N, H)
  up_.plan(p, d, sp);                                                  // (N, H)
  saved_.act = p.keep("mlp.act", d.N * H_, Keep::unless_recompute);    // (N, H)
  down_.plan(p, d, sp);                                                // (Ns, C)
  dact_ = p.scratch("grad.act", d.N * H_);
  dgate_ = p.scratch("grad.gate", d.N * H_);
  dup_ = p.scratch("grad.up", d.N * H_);
}

void SwiGluMlp::forward(Ctx& c, const void* x) {
  Linear::forward_group(c, {&gate_, &up_}, x);
  recompute_selective(c);
  down_.forward(c, c.at(saved_.act));
}

void SwiGluMlp::recompute_selective(Ctx& c) {
  c.be.swiglu_forward(c.dt, c.at(saved_.act), c.at(gate_.output()), c.at(up_.output()), c.d.N * H_);
}

void SwiGluMlp::backward(Ctx& c, void* dx, const void* dout, const void* x) {
  const int64_t n = c.d.N * H_;
  c.zero(dact_, n);
  down_.backward(c, c.at(dact_), dout, c.at(saved_.act));
  c.zero(dgate_, n);
  c.zero(dup_, n);
  c.be.swiglu_backward(c.dt, c.at(dgate_), c.at(dup_), c.at(dact_), c.at(gate_.output()), c.at(up_.output()), n);
  Linear::backward_group(c, {{&gate_, c.at(dgate_)}, {&up_, c.at(dup_)}}, dx, x);
}

void SwiGluMlp::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t esz = int64_t(dtype_size(c.dt)), n = c.d.N * H_;
  gate_.cost(c, out);
  up_.cost(c, out);
  c.memory(out, "swiglu forward", false, 3 * n * esz);
  c.memory(out, "swiglu backward", true, 7 * n * esz);
  c.saved(out, "swiglu output", Keep::unless_recompute, n * esz);
  down_.cost(c, out);
}

void SwiGluMlp::activations(std::vector<std::pair<std::string, Act>>& out) const {
  out.push_back({"mlp.gate_proj", gate_.output()});
  out.push_back({"mlp.up_proj", up_.output()});
  out.push_back({"mlp.act", saved_.act});
  out.push_back({"mlp.down_proj", down_.output()});
}

}  // namespace meshlm
