// GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it: token + position embedding,
// L pre-LayerNorm blocks (ln_1 -> causal self-attention c_attn/c_proj -> residual, ln_2 ->
// MLP c_fc -> GELU(tanh) -> c_proj -> residual), ln_f, LM head tied to wte, no dropout.
// Written once, with unsharded shapes; explicit forward and backward through the Backend.
// The model owns its flat parameter and gradient buffers and its saved activations; it runs in
// fp32 on any backend, or in fp64 on the reference backend (the double-precision oracle).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/params.h"

namespace meshlm {

class Gpt {
 public:
  Gpt(const ModelConfig& cfg, Backend& backend, DType dtype = DType::fp32);

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  DType dtype() const { return dtype_; }
  Tensor& params() { return params_; }  // (P,) flat, in table order
  Tensor& grads() { return grads_; }    // (P,) flat, same offsets
  const Tensor& params() const { return params_; }
  void* param(const std::string& name);  // pointer to one parameter inside params()

  void init(uint64_t seed);
  void zero_grad() { grads_.zero(); }

  // Forward over tokens (B, T). With targets (B, T) returns the mean cross-entropy over the
  // B*T positions (else 0). If dloss_scale != 0, the logits are replaced by the gradient of
  // dloss_scale * mean_loss, ready for backward(); use 1/accumulation_steps when accumulating.
  double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                 float dloss_scale = 0.0f);
  // Adds the gradient of the last forward's scaled loss into grads() (the += convention).
  void backward();

  // Logits (Vp,) of position (b, t) of the last forward run without dloss_scale, as fp32,
  // first V entries meaningful.
  std::vector<float> logits_at(int64_t b, int64_t t) const;

 private:
  void ensure_activations(int64_t B, int64_t T);
  void* act(size_t offset) { return static_cast<char*>(acts_.data()) + offset * esz_; }
  const void* act(size_t offset) const {
    return static_cast<const char*>(acts_.data()) + offset * esz_;
  }

  ModelConfig cfg_;
  Backend& be_;
  DType dtype_;
  size_t esz_;
  ParamTable table_;
  Tensor params_, grads_;

  // Activations, laid out for the capacity (B_cap, T_cap); offsets in elements.
  int64_t B_cap_ = 0, T_cap_ = 0, B_ = 0, T_ = 0;
  Tensor acts_;
  std::vector<int32_t> tokens_, targets_;  // (B, T) of the last forward
  struct Offsets {
    size_t encoded, lnf, lnf_mean, lnf_rstd, logits, losses;
    size_t dres, dln, dbig, dbig2, dqkv, datty;
    std::vector<size_t> ln1, ln1_mean, ln1_rstd, qkv, atty, lse, attproj, res2, ln2, ln2_mean,
        ln2_rstd, fch, fch_gelu, fcproj, res3;
  } off_{};
};

}  // namespace meshlm
