#include "train/stability.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace meshlm {

namespace {

const char* kActions[] = {"warn", "skip", "rescale", "promote", "stop"};
const char* kOperands[] = {"x", "w", "g"};

// Underflow is judged on the forward operands (x, w) only: gradients carry their signal in their
// large values and lose many small ones to zero in every low-bit format while training on.
bool judged_on_underflow(int op) { return op < 2; }

std::string pct(double f) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g%%", 100 * f);
  return b;
}

}  // namespace

InstabilityAction instability_action_from_name(const std::string& name) {
  for (int i = 0; i < 5; i++)
    if (name == kActions[i]) return InstabilityAction(i);
  throw Error("on_instability must be warn, skip, rescale, promote or stop, got '" + name + "'");
}

const char* instability_action_name(InstabilityAction a) { return kActions[int(a)]; }

void StabilityConfig::validate() const {
  MESHLM_CHECK(z > 0 && window >= 2 && warmup >= 2 && warmup <= window,
               "instability_z must be positive and 2 <= instability_warmup <= instability_window");
  MESHLM_CHECK(overflow_rate >= 0 && overflow_rate <= 1 && underflow_rate >= 0 && underflow_rate <= 1,
               "instability_overflow and instability_underflow are fractions in [0, 1]");
}

std::string Instability::describe(const QuantRecipe* quant) const {
  if (kind == "nonfinite") return "nonfinite: the gradient holds inf or NaN";
  if (step_wide()) {
    char b[160];
    std::snprintf(b, sizeof b, "%s: %.4g is %.1f standard deviations above the recent mean (limit %.1f)",
                  kind.c_str(), value, score, threshold);
    return b;
  }
  const std::string where = quant ? quant->sites()[size_t(site)].name + " (" + quant->sites()[size_t(site)].format.name + ")"
                                  : "site " + std::to_string(site);
  return kind + ": " + pct(value) + " of " + operand + (kind == "overflow" ? " saturated" : " flushed to zero") +
         " at " + where + " (limit " + pct(threshold) + ")";
}

StabilityGuard::StabilityGuard(const StabilityConfig& cfg) : cfg_(cfg) { cfg_.validate(); }

bool StabilityGuard::spike(const std::deque<double>& h, double x, double z, double& score) {
  double mean = 0, var = 0;
  for (double v : h) mean += v;
  mean /= double(h.size());
  for (double v : h) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / double(h.size() - 1));
  score = sd > 0 ? (x - mean) / sd : 0;
  return sd > 0 && score > z;
}

std::vector<Instability> StabilityGuard::check(double loss, double norm, bool nonfinite, const QuantRecipe* quant) const {
  std::vector<Instability> out;
  if (nonfinite || !std::isfinite(loss)) out.push_back({"nonfinite", -1, "", 0, 0, 0});
  double score = 0;
  if (!nonfinite && int64_t(losses_.size()) >= cfg_.warmup) {
    if (spike(losses_, loss, cfg_.z, score)) out.push_back({"loss spike", -1, "", loss, score, cfg_.z});
    if (spike(norms_, norm, cfg_.z, score)) out.push_back({"grad-norm spike", -1, "", norm, score, cfg_.z});
  }
  if (!quant) return out;
  const std::vector<double>& c = quant->summed_counts();
  for (size_t s = 0; s * QuantRecipe::kCounts < c.size(); s++)
    for (int op = 0; op < 3; op++) {
      const double n = c[s * QuantRecipe::kCounts + 3 * size_t(op)];
      if (n <= 0) continue;
      const double over = c[s * QuantRecipe::kCounts + 3 * size_t(op) + 1] / n;
      const double under = c[s * QuantRecipe::kCounts + 3 * size_t(op) + 2] / n;
      if (over > cfg_.overflow_rate) out.push_back({"overflow", int64_t(s), kOperands[op], over, 0, cfg_.overflow_rate});
      if (judged_on_underflow(op) && under > cfg_.underflow_rate)
        out.push_back({"underflow", int64_t(s), kOperands[op], under, 0, cfg_.underflow_rate});
    }
  return out;
}

void StabilityGuard::accept(double loss, double norm) {
  if (!std::isfinite(loss) || !std::isfinite(norm)) return;
  losses_.push_back(loss);
  norms_.push_back(norm);
  if (int64_t(losses_.size()) > cfg_.window) losses_.pop_front(), norms_.pop_front();
}

int64_t StabilityGuard::worst_site(const QuantRecipe& quant) {
  const std::vector<double>& c = quant.summed_counts();
  int64_t best = -1;
  double best_rate = -1;
  for (size_t s = 0; s < quant.sites().size() && s * QuantRecipe::kCounts < c.size(); s++) {
    if (!quant.sites()[s].format.quantized) continue;
    double rate = 0;
    for (int op = 0; op < 3; op++) {
      const double n = c[s * QuantRecipe::kCounts + 3 * size_t(op)];
      const double under = judged_on_underflow(op) ? c[s * QuantRecipe::kCounts + 3 * size_t(op) + 2] : 0;
      if (n > 0) rate = std::max(rate, (c[s * QuantRecipe::kCounts + 3 * size_t(op) + 1] + 1e-3 * under) / n);
    }
    if (rate > best_rate) best = int64_t(s), best_rate = rate;
  }
  return best;
}

nlohmann::json StabilityGuard::state() const {
  return {{"losses", std::vector<double>(losses_.begin(), losses_.end())},
          {"norms", std::vector<double>(norms_.begin(), norms_.end())}};
}

void StabilityGuard::set_state(const nlohmann::json& j) {
  try {
    const std::vector<double> l = j.at("losses").get<std::vector<double>>(), n = j.at("norms").get<std::vector<double>>();
    MESHLM_CHECK(l.size() == n.size(), "stability state: losses and norms differ in length");
    losses_.assign(l.begin(), l.end());
    norms_.assign(n.begin(), n.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("checkpoint: bad stability state: ") + e.what());
  }
}

}  // namespace meshlm
