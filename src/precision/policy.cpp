#include "precision/policy.h"

#include <algorithm>

#include "core/error.h"
#include "precision/gemm_formats.h"

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
  } else if (m.substr(0, m.find('+')) != "bf16" && is_gemm_format(m.substr(0, m.find('+')))) {
    compute = DType::bf16;
    gemm_format(m);  // throws on a bad option
    gemm = m;
  } else {
    throw Error("precision must be fp32, bf16, fp16, fp16-pure, fp8 or a GEMM format (fp8-current, fp8-rowwise, "
                "mxfp8, mxfp8-e5m2, mxfp6, mxfp4, nvfp4, each with +options), got '" + m + "'");
  }
  if (loss_scale > 0) static_scale = loss_scale;
  MESHLM_CHECK(master || m == "bf16", "master_weights = 0 is a bf16 mode");
}

bool is_gemm_format(const std::string& base) {
  const std::vector<std::string>& n = gemm_format_names();
  return std::find(n.begin(), n.end(), base) != n.end();
}

std::string Precision::describe() const {
  std::string s = mode + ": compute " + dtype_name(compute);
  if (fp16_pure) s += ", weights/grads/Adam state fp16 (the naive recipe)";
  else if (!master_weights) s += ", weights bf16 only (stochastic rounding of every update)";
  else if (compute != DType::fp32) s += ", fp32 master weights and Adam state";
  if (fp8) s += ", block GEMM operands e4m3/e5m2 with delayed scaling (simulated: bf16 arithmetic)";
  if (!gemm.empty()) s += ", block GEMM operands in " + gemm + " (simulated: bf16 arithmetic)";
  if (stochastic_rounding) s += ", stochastic rounding of the compute weights";
  if (dynamic_scaling) s += ", dynamic loss scaling";
  else if (static_scale != 1.0) s += ", static loss scale " + std::to_string(static_scale);
  return s;
}

}  // namespace meshlm
