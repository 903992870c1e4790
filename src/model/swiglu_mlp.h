// Llama's MLP: gate_proj and up_proj (C -> H, column-parallel by hidden units, one entry
// collective for the two), SwiGLU silu(gate) * up on this rank's H / tp units, and a
// row-parallel down_proj (H -> C). nn.Linear weights (out, in), no biases.
#pragma once
#include <string>
#include <vector>

#include "model/linear.h"

namespace meshlm {

class SwiGluMlp {
 public:
  // prefix: "model.layers.3.mlp"; H: the hidden width (ModelConfig::ffn_width)
  SwiGluMlp(const std::string& prefix, int64_t C, int64_t H);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act output() const { return down_.output(); }  // (Ns, C)
  std::vector<Linear*> linears() { return {&gate_, &up_, &down_}; }
  void forward(Ctx& c, const void* x);
  void recompute_selective(Ctx& c);  // SwiGLU again from the saved gate and up outputs
  // dx += the gradient of x given dout, the gradient of output().
  void backward(Ctx& c, void* dx, const void* dout, const void* x);
  void cost(const CostContext& c, std::vector<Cost>& out) const;
  void activations(std::vector<std::pair<std::string, Act>>& out) const;

 private:
  Linear gate_, up_, down_;
  int64_t H_ = 0;  // this rank's hidden units
  struct Saved {
    Act act;  // (N, H): silu(gate) * up, rebuilt by any recomputation
  } saved_;
  Act dact_, dgate_, dup_;  // backward scratch, (N, H) each
};

}  // namespace meshlm
