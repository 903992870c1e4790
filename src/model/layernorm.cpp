#include "model/layernorm.h"

namespace meshlm {

LayerNorm::LayerNorm(std::string name, int64_t C, Keep keep, std::string key)
    : name_(std::move(name)), key_(std::move(key)), C_(C), keep_(keep) {}

void LayerNorm::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  out.push_back({name_ + ".weight", {C_}, 0, 1, false, {}, -1, group, false});
  out.push_back({name_ + ".bias", {C_}, 0, 0, false, {}, -1, group, false});
}

void LayerNorm::bind(const ParamTable& table) {
  w_ = &table.at(name_ + ".weight");
  b_ = &table.at(name_ + ".bias");
}

void LayerNorm::plan(ActivationPlanner& p, const Dims& d) {
  saved_.out = p.keep(key_ + ".out", d.Ns * C_, keep_);      // (Ns, C)
  saved_.mean = p.keep(key_ + ".mean", d.Ns, keep_, true);  // (Ns)
  saved_.rstd = p.keep(key_ + ".rstd", d.Ns, keep_, true);  // (Ns)
}

void LayerNorm::forward(Ctx& c, const void* inp) {
  c.be.layernorm_forward(c.dt, c.at(saved_.out), c.at(saved_.mean), c.at(saved_.rstd), inp, c.w.weight(*w_), c.w.weight(*b_), c.d.Ns,
                         C_);
}

void LayerNorm::forward_add(Ctx& c, void* sum, const void* a, const void* b) {
  c.be.residual_layernorm_forward(c.dt, sum, c.at(saved_.out), c.at(saved_.mean), c.at(saved_.rstd), a, b,
                                  c.w.weight(*w_), c.w.weight(*b_), c.d.Ns, C_);
}

void LayerNorm::backward(Ctx& c, void* dinp, const void* dout, const void* inp) {
  if (!c.sequence_parallel) {
    c.be.layernorm_backward(c.dt, dinp, c.w.grad(*w_), c.w.grad(*b_), dout, inp, c.w.weight(*w_), c.at(saved_.mean),
                            c.at(saved_.rstd), c.d.Ns, C_);
    return;
  }
  if (partial_.numel() < 2 * C_) partial_ = Tensor({2 * C_}, DType::fp32, c.be);
  float* part = partial_.as<float>();  // (2C): the weight's and the bias's partial gradients
  c.be.zero(part, size_t(2 * C_) * 4);
  c.be.layernorm_backward(c.dt, dinp, part, part + C_, dout, inp, c.w.weight(*w_), c.at(saved_.mean), c.at(saved_.rstd), c.d.Ns,
                          C_);
  c.tp.sum_partial_grads(part, 2 * C_);
  c.be.accumulate(DType::fp32, c.w.grad(*w_), part, C_);
  c.be.accumulate(DType::fp32, c.w.grad(*b_), part + C_, C_);
}

void LayerNorm::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t esz = int64_t(dtype_size(c.dt)), rows = c.d.Ns;
  c.memory(out, name_ + " forward", false, 2 * rows * C_ * esz);   // read x, write out
  c.memory(out, name_ + " backward", true, 4 * rows * C_ * esz);   // read x, dout, dinp; write dinp
  c.saved(out, name_ + " output", keep_, rows * C_ * esz);
  c.saved(out, name_ + " statistics", keep_, 2 * rows * int64_t(dtype_size(c.stat_dt)));
}

}  // namespace meshlm
