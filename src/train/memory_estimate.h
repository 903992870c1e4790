// Before anything is allocated: the memory a rank of this run will need, from the parameter
// table and the layers' cost records (so later sharding stages extend it), against what this
// rank can really have (the cgroup limit, RLIMIT_AS, the node's physical memory shared by the
// ranks on it). A model that cannot fit is a one-line error before the first allocation. The
// estimate is a lower bound (the layers' scratch buffers are not counted: measured 20-45% of the
// activations), so it refuses only what certainly cannot fit.
#pragma once
#include <string>

#include "train/config.h"

namespace meshlm {

struct MemoryEstimate {
  double weights = 0, grads = 0, moments = 0, activations = 0;  // bytes of this rank
  double total() const { return weights + grads + moments + activations; }
  std::string describe() const;  // "1.2 GiB (weights 0.5, grads 0.4, Adam moments 0.2, activations 0.1)"
};
MemoryEstimate estimate_memory(const TrainConfig& cfg, int pp_rank);

struct MemoryLimit {
  double bytes = 0;
  std::string source;  // "cgroup memory.max", "RLIMIT_AS", "physical memory / 2 ranks on this node"
};
MemoryLimit memory_available();

// Throws when the estimate exceeds the limit.
void check_memory_fits(const TrainConfig& cfg, int rank, int pp_rank);

}  // namespace meshlm
