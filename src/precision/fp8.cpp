#include "precision/fp8.h"

#include <cstring>

#include "core/lowp.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace meshlm {

void Fp8ScalingConfig::validate() const {
  MESHLM_CHECK(history > 0, "fp8: amax history length must be positive");
  MESHLM_CHECK(algorithm == "max" || algorithm == "most_recent",
               "fp8: amax algorithm must be 'max' or 'most_recent' (got '" + algorithm + "')");
  MESHLM_CHECK(margin >= 0 && margin < 32, "fp8: margin must be in [0, 32)");
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

float amax_bf16(const uint16_t* x, int64_t n) {
  float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float a = std::fabs(lowp::bf16_to_f32(x[i]));
    if (a <= 3.4e38f) amax = std::max(amax, a);
  }
  return amax;
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

float fake_quantize_bf16(DType format, const uint16_t* x, uint16_t* y, int64_t n, float scale) {
  const FloatFormat f = float_format(format);
  const int drop = 23 - f.man_bits;                         // fp32 mantissa bits removed
  const float min_normal = std::ldexp(1.0f, 1 - f.bias);    // smallest normal of the format
  const float quantum = std::ldexp(1.0f, 1 - f.bias - f.man_bits);  // its subnormal spacing
  const float max_finite = float(f.max_finite);
  const float inv = 1.0f / scale;
  float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float v = lowp::bf16_to_f32(x[i]);
    const float a = std::fabs(v);
    if (!std::isfinite(a)) {  // inf and NaN pass through
      y[i] = x[i];
      continue;
    }
    amax = std::max(amax, a);
    float r = a * scale;
    if (r >= min_normal) {  // round the fp32 mantissa to man_bits, ties to even
      uint32_t u;
      std::memcpy(&u, &r, 4);
      u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
      u &= ~((1u << drop) - 1);
      std::memcpy(&r, &u, 4);
    } else {
      r = std::nearbyint(r / quantum) * quantum;
    }
    if (r > max_finite) r = max_finite;  // satfinite
    y[i] = lowp::f32_to_bf16(std::copysign(r, v) * inv);
  }
  return amax;
}

}  // namespace meshlm
