#include "precision/fp8.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace meshlm {

void Fp8ScalingConfig::validate() const {
  MESHLM_CHECK(history > 0, "fp8: amax history length must be positive");
  MESHLM_CHECK(algorithm == "max" || algorithm == "most_recent",
               "fp8: amax algorithm must be 'max' or 'most_recent' (got '" + algorithm + "')");
  MESHLM_CHECK(margin >= 0 && margin < 32, "fp8: margin must be in [0, 32)");
  MESHLM_CHECK(gemm == "auto" || gemm == "simulated" || gemm == "real",
               "fp8: fp8_gemm must be auto, simulated or real (got '" + gemm + "')");
}

Fp8Scale::Fp8Scale(DType format, const Fp8ScalingConfig& cfg) : format_(format), cfg_(cfg) {
  MESHLM_CHECK(format == DType::fp8_e4m3 || format == DType::fp8_e5m2, "fp8: format must be e4m3 or e5m2");
  cfg_.validate();
}

void Fp8Scale::record_amax(float amax) {
  MESHLM_CHECK(std::isfinite(amax) && amax >= 0, "fp8: amax must be finite and >= 0");
  history_.push_back(amax);
  while (int64_t(history_.size()) > cfg_.history) history_.pop_front();
  const float a = cfg_.algorithm == "max" ? *std::max_element(history_.begin(), history_.end()) : history_.back();
  if (a > 0) scale_ = float(float_format(format_).max_finite / double(a) / std::ldexp(1.0, int(cfg_.margin)));
}

namespace {
float pow2_floor(float s) {
  int e;
  std::frexp(s, &e);  // s = f * 2^e, f in [0.5, 1)
  return std::ldexp(1.0f, e - 1);
}
}  // namespace

float Fp8Scale::pow2_scale() const { return pow2_floor(scale_); }

float Fp8Scale::pow2_scale_for(float amax) const {
  if (!(amax > 0) || !std::isfinite(amax)) return pow2_scale();
  return pow2_floor(float(float_format(format_).max_finite / double(amax) / std::ldexp(1.0, int(cfg_.margin))));
}

nlohmann::json Fp8Scale::to_json() const {
  return {{"format", dtype_name(format_)}, {"scale", scale_}, {"history", std::vector<float>(history_.begin(), history_.end())}};
}

void Fp8Scale::from_json(const nlohmann::json& j) {
  try {
    MESHLM_CHECK(j.at("format").get<std::string>() == dtype_name(format_), "fp8 state: format mismatch");
    scale_ = j.at("scale").get<float>();
    const auto h = j.at("history").get<std::vector<float>>();
    history_.assign(h.begin(), h.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("fp8 state: ") + e.what());
  }
}

float quantize_fp8(DType format, const float* x, uint8_t* q, int64_t n, float scale) {
  float amax = 0;
  for (int64_t i = 0; i < n; i++) {
    amax = std::max(amax, std::fabs(x[i]));
    q[i] = uint8_t(float_to_bits(format, x[i] * scale));
  }
  return amax;
}

void dequantize_fp8(DType format, const uint8_t* q, float* x, int64_t n, float scale) {
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; i++) x[i] = bits_to_float(format, q[i]) * inv;
}

}  // namespace meshlm
