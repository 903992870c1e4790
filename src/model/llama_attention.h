// Llama's self-attention: q_proj (C -> NH HS), k_proj and v_proj (C -> NKV HS) column-parallel
// by heads with one entry collective for the three (Linear::forward_group), the rotary
// embedding on q and k in place, causal attention with NKV key/value heads (grouped-query: a
// kv head serves NH / NKV query heads), and a row-parallel o_proj (NH HS -> C). No biases.
// Weights are nn.Linear's (out, in), q and k in Hugging Face's rotary layout.
//
// Over tp ranks: NH / tp query heads each; NKV / tp kv heads when tp divides NKV, else (tp a
// multiple of NKV) the one kv head its query heads read, shared with the tp / NKV ranks of
// that group, which sum its weight gradient (Linear, ParamEntry::parts).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/linear.h"

namespace meshlm {

class LlamaAttention {
 public:
  // prefix: "model.layers.3.self_attn"
  LlamaAttention(const std::string& prefix, const ModelConfig& cfg);
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  void bind(const ParamTable& table);
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act output() const { return o_.output(); }  // (Ns, C)
  std::vector<Linear*> linears() { return {&q_, &k_, &v_, &o_}; }
  void forward(Ctx& c, const void* x);
  void recompute_selective(Ctx& c);  // the core again from the saved (rotated) q, k, v
  // dx += the gradient of x (the norm's output) given dout, the gradient of output().
  void backward(Ctx& c, void* dx, const void* dout, const void* x);
  void cost(const CostContext& c, std::vector<Cost>& out) const;
  void activations(std::vector<std::pair<std::string, Act>>& out) const;

 private:
  AttentionShape shape(const Dims& d) const;
  void decode(Ctx& c);  // the core of a decode step, through the KV cache
  const void* table(Ctx& c);  // the rotary cos/sin table (T_max, HS/2, 2), made on first use

  Linear q_, k_, v_, o_;
  ModelConfig cfg_;
  int64_t HS_, NHl_ = 0, NKVl_ = 0;
  Tensor cos_sin_;  // statistics dtype
  struct Saved {
    Act atty, lse;  // (N, NHl HS); (B, NHl, T) statistics: rebuilt from q, k, v by recomputation
  } saved_;
  Act datty_, dq_, dk_, dv_;  // backward scratch
};

}  // namespace meshlm
