// LayerNorm over C channels of the rows of a sequence region (Ns rows): weight and bias,
// out = (x - mean) * rstd * weight + bias, saving mean and rstd (statistics) for backward.
// Under sequence parallelism each tensor-parallel rank holds Ns = N / tp rows, so its weight
// and bias gradients are partial: each call's part is summed over the group on its own
// (summing the accumulated gradient would count earlier micro-batches tp times).
#pragma once
#include <string>
#include <vector>

#include "model/layer.h"

namespace meshlm {

class LayerNorm {
 public:
  // name: the parameters' prefix ("transformer.h.0.ln_1"); key: its buffers' when recomputed.
  LayerNorm(std::string name, int64_t C, Keep keep, std::string key);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d);
  Act output() const { return saved_.out; }
  void forward(Ctx& c, const void* inp);
  // sum (Ns, C) = a + b (a residual add), then forward(sum), in one pass (fused in the backend).
  void forward_add(Ctx& c, void* sum, const void* a, const void* b);
  // dinp (Ns, C) += the input gradient of dout; the parameters' gradients +=.
  void backward(Ctx& c, void* dinp, const void* dout, const void* inp);
  void cost(const CostContext& c, std::vector<Cost>& out) const;

 private:
  std::string name_, key_;
  int64_t C_;
  Keep keep_;
  const ParamEntry *w_ = nullptr, *b_ = nullptr;
  // What forward keeps for backward (per the owner's Keep: recomputation may rebuild it).
  struct Saved {
    Act out, mean, rstd;  // (Ns, C); (Ns) and (Ns) statistics
  } saved_;
  Tensor partial_;  // (2C) fp32: this call's weight and bias gradients under sequence parallelism
};

}  // namespace meshlm
