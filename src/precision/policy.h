// The precision policy of a run, resolved once from its configuration (`--precision` and the
// keys beside it); docs/numerics.md describes each mode.
//
//   mode       compute (weights, activations)   master + Adam   loss scaling
//   fp32       fp32                             fp32            none
//   bf16       bf16 copy of the master          fp32            none
//   fp16       fp16 copy of the master          fp32            dynamic (or static if given)
//   fp16-pure  fp16: the weights themselves     fp16            none (or static if given)
//   fp8        bf16, GEMM operands through      fp32            none (per-tensor delayed
//              e4m3 (grads e5m2)                                scales instead)
//   mxfp4 ...  bf16, GEMM operands through      fp32            none (block scales, current)
//              the GEMM format (gemm_formats.h)
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "model/model.h"

namespace meshlm {

struct Precision {
  std::string mode = "fp32";
  DType compute = DType::fp32;
  bool dynamic_scaling = false;  // fp16 without a static loss_scale
  double static_scale = 1.0;     // the loss scale when not dynamic
  bool fp16_pure = false, fp8 = false;
  std::string gemm;  // a GEMM format of the ladder (precision/gemm_formats.h) for every block Linear, or ""
  bool master_weights = true;       // false: bf16 weights only, updated with stochastic rounding
  bool stochastic_rounding = false;  // of the compute copy
  uint64_t seed = 0;                 // of the stochastic rounding

  // loss_scale: 0 means the mode's default. Throws on an unknown mode.
  Precision(const std::string& mode, bool stochastic_rounding, bool master_weights,
            double loss_scale, uint64_t seed);
  // How the compute copy written after optimizer step `step` is rounded.
  WeightRounding rounding(int64_t step) const {
    return {stochastic_rounding || !master_weights, seed, step};
  }
  std::string describe() const;  // one line for the run's header
};

bool is_gemm_format(const std::string& base);  // a base name of gemm_format_names()

}  // namespace meshlm
