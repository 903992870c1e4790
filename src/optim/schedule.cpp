#include "optim/schedule.h"

#include <cmath>

#include "core/error.h"

namespace meshlm {

void LrSchedule::validate() const {
  MESHLM_CHECK(kind == "cosine" || kind == "constant",
               "lr_schedule must be 'cosine' or 'constant' (got '" + kind + "')");
  MESHLM_CHECK(lr > 0, "lr must be positive");
  MESHLM_CHECK(min_lr >= 0 && min_lr <= lr, "min_lr must be in [0, lr]");
  MESHLM_CHECK(warmup_steps >= 0, "warmup_steps must be >= 0");
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * double(step + 1) / double(warmup_steps);
  if (kind == "constant") return lr;
  const int64_t decay = std::max<int64_t>(1, total_steps - warmup_steps - 1);
  double progress = std::min(1.0, double(step - warmup_steps) / double(decay));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace meshlm
