// fp8 as a transform of the model's GEMMs: every Linear of the blocks (GPT-2: c_attn, attn
// c_proj, c_fc, mlp c_proj) gets a quantizer that passes its input and weight through e4m3 and
// its output gradient through e5m2, each with a per-tensor delayed scale (precision/fp8.h);
// the embedding and the LM head stay bf16. The model itself is unchanged (compute dtype bf16).
// The products are either simulated (operands read back in bf16, the Linear's bf16 GEMMs) or
// real (the quantizer runs gemm_fp8 on one-byte codes: fp8 tensor cores on a GPU); the values
// multiplied are the same, only the order of the fp32 sums differs.
//
// Sites: one per block Linear of the whole model, in model order (layer-major), so every
// pipeline stage holds the same table (its own Linears use theirs). The amaxes a step sees are
// recorded by end_step(), after the trainer has max-reduced them over every rank
// (step_amaxes / set_step_amaxes), so forward and backward of a step use the same scales and
// every rank derives the same ones. The scratch for the quantized operands is shared by the
// sites and grows to the largest operands.
#pragma once
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "precision/fp8.h"

namespace meshlm {

class Fp8Recipe {
 public:
  Fp8Recipe(Model& model, const Fp8ScalingConfig& cfg);
  ~Fp8Recipe();
  Fp8Recipe(const Fp8Recipe&) = delete;
  Fp8Recipe& operator=(const Fp8Recipe&) = delete;
  void end_step();
  // The amaxes this step has seen so far, 3 per site (input, weight, output gradient).
  std::vector<float> step_amaxes();
  void set_step_amaxes(const std::vector<float>& a);
  nlohmann::json state() const;  // [[x, w, g], ...] per site
  void set_state(const nlohmann::json& j);
  // Whether the products are real fp8 GEMMs (Fp8ScalingConfig::gemm), not bf16 ones on
  // operands read back from fp8.
  bool real_gemms() const { return real_; }
  // Whether the backend has fp8 tensor cores (supports(gemm, fp8_e4m3)): real products there
  // run at fp8 speed; elsewhere their codes are widened and the speed is not fp8's.
  bool fp8_hardware() const { return hardware_; }

 private:
  class Site;
  uint16_t* scratch(Tensor& t, int64_t n, Backend& be);  // t grown to n elements
  uint8_t* codes(Tensor& t, int64_t n, Backend& be);     // t grown to n one-byte codes
  Model& model_;
  bool hardware_;
  bool real_;
  std::vector<std::unique_ptr<Site>> sites_;
  Tensor a_, b_;    // simulated: quantized operands (bf16): x or g; w then x
  Tensor a8_, b8_;  // real: fp8 codes: x or g; w or x
  Tensor amax_dev_;  // real: (sites, 3) fp32 in the backend, this step's amaxes (x, w, g)
  void fold_device_amaxes();
};

}  // namespace meshlm
