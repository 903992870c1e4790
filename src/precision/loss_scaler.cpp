#include "precision/loss_scaler.h"

#include <cmath>

#include "core/error.h"

namespace meshlm {

void LossScalerConfig::validate() const {
  MESHLM_CHECK(initial_scale > 0 && std::isfinite(initial_scale), "loss scale: initial scale must be positive");
  MESHLM_CHECK(growth > 1, "loss scale: growth factor must be > 1");
  MESHLM_CHECK(backoff > 0 && backoff < 1, "loss scale: backoff factor must be in (0, 1)");
  MESHLM_CHECK(growth_interval > 0, "loss scale: growth interval must be positive");
  MESHLM_CHECK(hysteresis > 0, "loss scale: hysteresis must be positive");
  MESHLM_CHECK(min_scale > 0 && min_scale <= initial_scale, "loss scale: minimum must be in (0, initial]");
}

LossScaler::LossScaler(const LossScalerConfig& cfg) : cfg_(cfg), scale_(cfg.initial_scale) { cfg_.validate(); }

bool LossScaler::update(bool found_inf) {
  if (found_inf) {
    skipped_++;
    clean_run_ = 0;
    if (++overflows_ >= cfg_.hysteresis) {
      const double next = scale_ * cfg_.backoff;
      MESHLM_CHECK(next >= cfg_.min_scale,
                   "loss scale would fall to " + std::to_string(next) + ", below the minimum " +
                       std::to_string(cfg_.min_scale) +
                       ": the gradients overflow fp16 even unscaled; stopping (try bf16, or a lower lr)");
      scale_ = next;
      overflows_ = 0;
    }
    return false;
  }
  if (++clean_run_ >= cfg_.growth_interval) {
    scale_ *= cfg_.growth;
    clean_run_ = 0;
    overflows_ = 0;
  }
  return true;
}

nlohmann::json LossScaler::to_json() const {
  return {{"scale", scale_}, {"clean_run", clean_run_}, {"overflows", overflows_}, {"skipped", skipped_}};
}

void LossScaler::from_json(const nlohmann::json& j) {
  try {
    scale_ = j.at("scale").get<double>();
    clean_run_ = j.at("clean_run").get<int64_t>();
    overflows_ = j.at("overflows").get<int64_t>();
    skipped_ = j.at("skipped").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("loss scaler state: ") + e.what());
  }
  MESHLM_CHECK(scale_ > 0 && clean_run_ >= 0 && overflows_ >= 0, "loss scaler state: out of range");
}

}  // namespace meshlm
