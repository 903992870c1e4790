// Causal multi-head self-attention: a column-parallel c_attn (C -> 3C: q, k, v side by side,
// split by heads within each), the attention core over this rank's NH / tp heads (the backend
// kernel; only the log-sum-exp per row is kept), and a row-parallel c_proj (C -> C). Under the
// plan the core's heads are local to a rank, so the only collectives are the Linears' own.
#pragma once
#include <string>
#include <vector>

#include "model/linear.h"

namespace meshlm {

class Attention {
 public:
  // prefix: "transformer.h.3.attn"; proj_std: c_proj's initial std (GPT-2's 0.02 / sqrt(2 L)).
  Attention(const std::string& prefix, int64_t C, int64_t NH, double proj_std);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act output() const { return c_proj_.output(); }  // (Ns, C)
  std::vector<Linear*> linears() { return {&c_attn_, &c_proj_}; }
  void forward(Ctx& c, const void* x);
  // The core's output and lse again from the saved qkv (selective recomputation).
  void recompute_selective(Ctx& c);
  // dx += the gradient of x (the layernorm's output) given dout, the gradient of output().
  void backward(Ctx& c, void* dx, const void* dout, const void* x);
  void cost(const CostContext& c, std::vector<Cost>& out) const;
  // Its kept activations, for the numerics report.
  void activations(std::vector<std::pair<std::string, Act>>& out) const;

 private:
  AttentionShape shape(const Dims& d) const;
  void decode(Ctx& c);      // the core of a decode step, through the KV cache
  void fill_cache(Ctx& c);  // a prefill's keys and values into the cache
  Linear c_attn_, c_proj_;
  int64_t C_, NH_, Cl_ = 0, NHl_ = 0;
  // Beside the Linears' outputs (qkv, the projection): the core's output and its rows'
  // log-sum-exps, which selective and full recomputation rebuild from qkv.
  struct Saved {
    Act atty, lse;  // (N, Cl); (B, NHl, T) statistics
  } saved_;
  Act datty_, dqkv_;  // backward scratch
};

}  // namespace meshlm
