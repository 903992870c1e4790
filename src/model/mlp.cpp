#include "model/mlp.h"

namespace meshlm {

Mlp::Mlp(const std::string& prefix, int64_t C, double proj_std)
    : c_fc_({prefix + ".c_fc", C, 4 * C, 0.02, true, WeightLayout::in_out, "", false, Keep::unless_full, "c_fc"}),
      c_proj_({prefix + ".c_proj", 4 * C, C, proj_std, true, WeightLayout::in_out, "", false, Keep::unless_full,
               "mlp.c_proj"}) {}

void Mlp::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  c_fc_.declare(out, group);
  c_proj_.declare(out, group);
}

void Mlp::bind(const ParamTable& table) {
  c_fc_.bind(table);
  c_proj_.bind(table);
  H_ = c_fc_.local_out();
}

void Mlp::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  c_fc_.plan(p, d, sp);                                            // (N, H)
  saved_.gelu = p.keep("mlp.gelu", d.N * H_, Keep::unless_recompute);    // (N, H)
  c_proj_.plan(p, d, sp);                                          // (Ns, C)
  dgelu_ = p.scratch("grad.gelu", d.N * H_);                       // (N, H)
  dfc_ = p.scratch("grad.fc", d.N * H_);                           // (N, H)
}

void Mlp::forward(Ctx& c, const void* x) {
  c_fc_.forward(c, x);
  recompute_selective(c);
  c_proj_.forward(c, c.at(saved_.gelu));
}

void Mlp::recompute_selective(Ctx& c) { c.be.gelu_forward(c.dt, c.at(saved_.gelu), c.at(c_fc_.output()), c.d.N * H_); }

void Mlp::backward(Ctx& c, void* dx, const void* dout, const void* x) {
  c.zero(dgelu_, c.d.N * H_);
  c_proj_.backward(c, c.at(dgelu_), dout, c.at(saved_.gelu));
  c.zero(dfc_, c.d.N * H_);
  c.be.gelu_backward(c.dt, c.at(dfc_), c.at(c_fc_.output()), c.at(dgelu_), c.d.N * H_);
  c_fc_.backward(c, dx, c.at(dfc_), x);
}

void Mlp::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t esz = int64_t(dtype_size(c.dt)), n = c.d.N * H_;
  c_fc_.cost(c, out);
  c.memory(out, "gelu forward", false, 2 * n * esz);
  c.memory(out, "gelu backward", true, 4 * n * esz);
  c.saved(out, "gelu output", Keep::unless_recompute, n * esz);
  c_proj_.cost(c, out);
}

void Mlp::activations(std::vector<std::pair<std::string, Act>>& out) const {
  out.push_back({"mlp.c_fc", c_fc_.output()});
  out.push_back({"mlp.gelu", saved_.gelu});
  out.push_back({"mlp.c_proj", c_proj_.output()});
}

}  // namespace meshlm
