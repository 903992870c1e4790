// The dynamic loss scaler of fp16 mixed precision, as a small state machine:
//   - the loss is multiplied by scale() before backward, the gradients divided by it after;
//   - a step whose gradients hold an inf or NaN (one flag, agreed by every rank once data
//     parallelism exists) is skipped; each such overflow counts toward `hysteresis`, and when
//     `hysteresis` overflows have happened since the scale last changed, the scale is multiplied
//     by `backoff` (0.5);
//   - after `growth_interval` consecutive clean steps the scale is multiplied by `growth` (2);
//   - if backing off would take the scale below `min_scale`, training stops with an error
//     (skipping every step forever would look like training while doing nothing).
// The whole state is a few numbers, checkpointed with to_json / from_json.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

namespace meshlm {

struct LossScalerConfig {
  double initial_scale = 65536.0;  // 2^16
  double growth = 2.0, backoff = 0.5;
  int64_t growth_interval = 2000;
  int64_t hysteresis = 2;
  double min_scale = 1.0;
  void validate() const;  // throws meshlm::Error on a bad value
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerConfig& cfg = {});
  double scale() const { return scale_; }
  // Records one step's outcome; returns true if the optimizer may step (no overflow). Throws
  // meshlm::Error when the scale would fall below the minimum.
  bool update(bool found_inf);
  int64_t skipped_steps() const { return skipped_; }

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);  // throws meshlm::Error on a malformed state

 private:
  LossScalerConfig cfg_;
  double scale_;
  int64_t clean_run_ = 0;  // consecutive clean steps since the last overflow or growth
  int64_t overflows_ = 0;  // overflows since the scale last changed
  int64_t skipped_ = 0;    // all skipped steps, for the log
};

}  // namespace meshlm
