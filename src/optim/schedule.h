// Learning-rate schedules: linear warmup, then cosine decay to min_lr or a constant.
#pragma once
#include <cstdint>
#include <string>

namespace meshlm {

struct LrSchedule {
  std::string kind = "cosine";  // "cosine" or "constant"
  double lr = 3e-4;             // peak learning rate
  double min_lr = 0.0;          // cosine floor, reached at the last step
  int64_t warmup_steps = 0;     // linear from lr/warmup to lr over these steps
  int64_t total_steps = 1;
  void validate() const;        // throws meshlm::Error on a bad kind or value
  double at(int64_t step) const;  // step is 0-based
};

}  // namespace meshlm
