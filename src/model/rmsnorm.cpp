#include "model/rmsnorm.h"

namespace meshlm {

RmsNorm::RmsNorm(std::string name, int64_t C, float eps, Keep keep, std::string key)
    : name_(std::move(name)), key_(std::move(key)), C_(C), eps_(eps), keep_(keep) {}

void RmsNorm::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  out.push_back({name_ + ".weight", {C_}, 0, 1, false, {}, -1, group, false});
}

void RmsNorm::bind(const ParamTable& table) { w_ = &table.at(name_ + ".weight"); }

void RmsNorm::plan(ActivationPlanner& p, const Dims& d) {
  saved_.out = p.keep(key_ + ".out", d.Ns * C_, keep_);      // (Ns, C)
  saved_.rstd = p.keep(key_ + ".rstd", d.Ns, keep_, true);  // (Ns)
}

void RmsNorm::forward(Ctx& c, const void* inp) {
  c.be.rmsnorm_forward(c.dt, c.at(saved_.out), c.at(saved_.rstd), inp, c.w.weight(*w_), c.d.Ns, C_, eps_);
}

void RmsNorm::forward_add(Ctx& c, void* sum, const void* a, const void* b) {
  c.be.residual_forward(c.dt, sum, a, b, c.d.Ns * C_);
  forward(c, sum);
}

void RmsNorm::backward(Ctx& c, void* dinp, const void* dout, const void* inp) {
  if (!c.sequence_parallel) {
    c.be.rmsnorm_backward(c.dt, dinp, c.w.grad(*w_), dout, inp, c.w.weight(*w_), c.at(saved_.rstd), c.d.Ns, C_);
    return;
  }
  if (partial_.numel() < C_) partial_ = Tensor({C_}, DType::fp32, c.be);
  float* part = partial_.as<float>();  // (C): the weight's partial gradient
  c.be.zero(part, size_t(C_) * 4);
  c.be.rmsnorm_backward(c.dt, dinp, part, dout, inp, c.w.weight(*w_), c.at(saved_.rstd), c.d.Ns, C_);
  c.tp.sum_partial_grads(part, C_);
  c.be.accumulate(DType::fp32, c.w.grad(*w_), part, C_);
}

void RmsNorm::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t esz = int64_t(dtype_size(c.dt)), rows = c.d.Ns;
  c.memory(out, name_ + " forward", false, 2 * rows * C_ * esz);
  c.memory(out, name_ + " backward", true, 4 * rows * C_ * esz);
  c.saved(out, name_ + " output", keep_, rows * C_ * esz);
  c.saved(out, name_ + " statistics", keep_, rows * int64_t(dtype_size(c.stat_dt)));
}

}  // namespace meshlm
