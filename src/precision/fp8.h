// fp8 with delayed per-tensor scaling (the Transformer Engine recipe, simulated on CPU: the
// arithmetic that follows is bf16/fp32, but every value passes through real fp8 rounding).
//
// A tensor is stored as q = fp8(x * scale) and read back as q / scale. The scale of a step is
// computed from the amax (max |x|) of earlier steps - a history of `history` amaxes, reduced by
// `algorithm` ("max" over the window or "most_recent") - as
//     scale = fp8_max / amax / 2^margin,
// so values like the recent ones land near the top of fp8's range. A value beyond what the
// stale scale allows saturates (e4m3) or becomes inf (e5m2); the current step's amax is
// recorded so the next scale adapts. e4m3 (max 448) is for weights and activations, e5m2
// (max 57344, wider range, less precision) for gradients.
#pragma once
#include <cstdint>
#include <deque>
#include <string>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace meshlm {

struct Fp8ScalingConfig {
  int64_t history = 16;
  std::string algorithm = "max";  // "max" | "most_recent"
  int64_t margin = 0;             // extra headroom, in powers of two
  // The products: "real" (fp8 codes into the backend's gemm_fp8), "simulated" (operands read
  // back in bf16, bf16 GEMMs: the same values, summed in another order), or "auto" (real where
  // the backend has fp8 tensor cores: supports(gemm, fp8_e4m3)).
  std::string gemm = "auto";
  void validate() const;
};

class Fp8Scale {
 public:
  Fp8Scale(DType format, const Fp8ScalingConfig& cfg = {});
  DType format() const { return format_; }
  float scale() const { return scale_; }
  // The scale rounded down to a power of two: x * s and q / s are then exact, so a quantized
  // value read back is exactly representable in bf16 (the backend's fake_quantize).
  float pow2_scale() const;
  // Before any amax is recorded (the first step), the scale is computed from the tensor at
  // hand ("just-in-time"), since 1.0 would flush small gradients to zero: pow2 of
  // fp8_max / amax / 2^margin. After that, pow2_scale().
  bool has_history() const { return !history_.empty(); }
  float pow2_scale_for(float amax) const;
  // Appends this step's amax and recomputes the scale used from the next step on. An amax of
  // 0 (an all-zero tensor) leaves the scale unchanged.
  void record_amax(float amax);
  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  DType format_;
  Fp8ScalingConfig cfg_;
  std::deque<float> history_;
  float scale_ = 1.0f;
};

// q[i] = fp8(x[i] * scale) with round-to-nearest-even; returns max |x[i]| (the amax to record).
float quantize_fp8(DType format, const float* x, uint8_t* q, int64_t n, float scale);
// x[i] = q[i] / scale.
void dequantize_fp8(DType format, const uint8_t* q, float* x, int64_t n, float scale);

// The simulated fp8 GEMM operand, y = bf16(fp8(x * scale) / scale) with saturation, is the
// backend's fake_quantize (backend/ops.inc); amax is the backend's too.

}  // namespace meshlm
