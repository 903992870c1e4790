// RMSNorm (Llama) over C channels of the rows of a sequence region (Ns rows): out = x * rstd *
// weight, rstd = 1 / sqrt(mean(x^2) + eps) saved for backward (statistics). Under sequence
// parallelism each call's weight gradient is partial and summed over the group on its own, as
// LayerNorm's (model/layernorm.h).
#pragma once
#include <string>
#include <vector>

#include "model/layer.h"

namespace meshlm {

class RmsNorm {
 public:
  // name: the parameter's prefix ("model.layers.0.input_layernorm"); key: its buffers' when recomputed.
  RmsNorm(std::string name, int64_t C, float eps, Keep keep, std::string key);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d);
  Act output() const { return saved_.out; }
  void forward(Ctx& c, const void* inp);
  // sum (Ns, C) = a + b (a residual add), then forward(sum): two backend calls (no fused
  // residual-RMSNorm kernel yet; LayerNorm has one).
  void forward_add(Ctx& c, void* sum, const void* a, const void* b);
  // dinp (Ns, C) += the input gradient of dout; the weight's gradient +=.
  void backward(Ctx& c, void* dinp, const void* dout, const void* inp);
  void cost(const CostContext& c, std::vector<Cost>& out) const;

 private:
  std::string name_, key_;
  int64_t C_;
  float eps_;
  Keep keep_;
  const ParamEntry* w_ = nullptr;
  struct Saved {
    Act out, rstd;  // (Ns, C); (Ns) statistics
  } saved_;
  Tensor partial_;  // (C) fp32: this call's weight gradient under sequence parallelism
};

}  // namespace meshlm
