// The stability rules (docs/numerics.md, "Stability"): each step, after backward and before the
// optimizer applies the step, the guard reads what the step measured (the loss, the gradient
// norm, whether the gradient is finite, and what quantizing did to each GEMM site's operands,
// summed over every rank) and names what is wrong with it:
//
//   nonfinite        the gradient holds an inf or NaN (or the loss is not finite)
//   loss spike       the loss is more than `z` standard deviations above the mean of the last
//                    `window` applied steps (a running z-score, as llm.c's outlier detector)
//   grad-norm spike  the same for the gradient norm
//   overflow         a site saturated more than `overflow_rate` of an operand's values
//   underflow        a site flushed more than `underflow_rate` of an operand's non-zero values
//
// Spikes are judged once `warmup` steps are in the history. The trainer then acts per
// --on-instability: warn (log it), skip (no update this step), rescale (skip, and halve the fp16
// loss scale), promote (the offending site, or for a step-wide problem the site that saturated
// most, moves up the ladder for the rest of the run, precision/gemm_formats.h; a non-finite
// gradient or a spike also skips the step), stop (end the run, naming the layer). Every rank
// sees the same numbers, so every rank decides the same at the same step; the history is part
// of the checkpoint, so a resumed run decides as the uninterrupted one.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "precision/quant_recipe.h"

namespace meshlm {

enum class InstabilityAction { warn, skip, rescale, promote, stop };
InstabilityAction instability_action_from_name(const std::string& name);  // throws on an unknown name
const char* instability_action_name(InstabilityAction a);

struct StabilityConfig {
  InstabilityAction action = InstabilityAction::warn;
  double z = 6.0;                // spike threshold, in standard deviations
  int64_t window = 100;          // applied steps in the history
  int64_t warmup = 20;           // history needed before spikes are judged
  double overflow_rate = 1e-3;   // of an operand's values
  double underflow_rate = 0.25;  // of an operand's values
  void validate() const;
};

struct Instability {
  std::string kind;   // "nonfinite", "loss spike", "grad-norm spike", "overflow", "underflow"
  int64_t site = -1;  // the GEMM site it is about (-1: the whole step)
  std::string operand;  // "x", "w", "g" for site events
  double value = 0;      // the loss or norm (spikes), the rate (site events)
  double score = 0;      // spikes: standard deviations above the recent mean
  double threshold = 0;  // the limit it passed (z, or the rate)
  bool step_wide() const { return site < 0; }
  std::string describe(const QuantRecipe* quant) const;  // "overflow: 0.31% of g saturated at ... (limit 0.10%)"
};

class StabilityGuard {
 public:
  explicit StabilityGuard(const StabilityConfig& cfg);
  const StabilityConfig& config() const { return cfg_; }
  // What is wrong with this step. quant: its summed counts (null: no GEMM formats).
  std::vector<Instability> check(double loss, double norm, bool nonfinite, const QuantRecipe* quant) const;
  // An applied step's loss and norm join the history (a skipped step's do not).
  void accept(double loss, double norm);
  // The quantized site with the highest saturation (then input / weight flush) rate this step; -1 if none.
  static int64_t worst_site(const QuantRecipe& quant);
  nlohmann::json state() const;
  void set_state(const nlohmann::json& j);

 private:
  static bool spike(const std::deque<double>& h, double x, double z, double& score);
  StabilityConfig cfg_;
  std::deque<double> losses_, norms_;
};

}  // namespace meshlm
