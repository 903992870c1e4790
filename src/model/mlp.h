// The GPT-2 MLP: a column-parallel c_fc (C -> 4C, split by hidden units), GELU (tanh) on this
// rank's hidden units, and a row-parallel c_proj (4C -> C).
#pragma once
#include <string>
#include <vector>

#include "model/linear.h"

namespace meshlm {

class Mlp {
 public:
  // prefix: "transformer.h.3.mlp"
  Mlp(const std::string& prefix, int64_t C, double proj_std);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act output() const { return c_proj_.output(); }  // (Ns, C)
  std::vector<Linear*> linears() { return {&c_fc_, &c_proj_}; }
  void forward(Ctx& c, const void* x);
  void recompute_selective(Ctx& c);  // GELU again from the saved c_fc output
  // dx += the gradient of x given dout, the gradient of output().
  void backward(Ctx& c, void* dx, const void* dout, const void* x);
  void cost(const CostContext& c, std::vector<Cost>& out) const;
  void activations(std::vector<std::pair<std::string, Act>>& out) const;

 private:
  Linear c_fc_, c_proj_;
  int64_t H_ = 0;  // this rank's hidden units (4C / tp)
  struct Saved {
    Act gelu;  // (N, H): GELU's output, rebuilt from c_fc's by any recomputation
  } saved_;
  Act dgelu_, dfc_;  // backward scratch
};

}  // namespace meshlm
