#include "precision/policy.h"

#include "core/error.h"

namespace meshlm {

Precision::Precision(const std::string& m, bool sr, bool master, double loss_scale, uint64_t s)
    : mode(m), master_weights(master), stochastic_rounding(sr), seed(s) {
  if (m == "fp32") {
    compute = DType::fp32;
  } else if (m == "bf16") {
    compute = DType::bf16;
  } else if (m == "fp16") {
    compute = DType::fp16;
    dynamic_scaling = loss_scale == 0;
  } else if (m == "fp16-pure") {
    compute = DType::fp16;
    fp16_pure = true;
  } else if (m == "fp8") {
    compute = DType::bf16;
    fp8 = true;
  } else {
    throw Error("precision must be fp32, bf16, fp16, fp16-pure or fp8, got '" + m + "'");
  }
  if (loss_scale > 0) static_scale = loss_scale;
  MESHLM_CHECK(master || m == "bf16", "master_weights = 0 is a bf16 mode");
}

std::string Precision::describe() const {
  std::string s = mode + ": compute " + dtype_name(compute);
  if (fp16_pure) s += ", weights/grads/Adam state fp16 (the naive recipe)";
  else if (!master_weights) s += ", weights bf16 only (stochastic rounding of every update)";
  else if (compute != DType::fp32) s += ", fp32 master weights and Adam state";
  if (fp8) s += ", block GEMM operands e4m3/e5m2 with delayed scaling (simulated: bf16 arithmetic)";
  if (stochastic_rounding) s += ", stochastic rounding of the compute weights";
  if (dynamic_scaling) s += ", dynamic loss scaling";
  else if (static_scale != 1.0) s += ", static loss scale " + std::to_string(static_scale);
  return s;
}

}  // namespace meshlm
