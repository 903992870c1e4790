// Before anything is allocated: the memory a rank of this run will need, from the parameter
// table and the layers' cost records (so later sharding stages extend it), against what this
// rank can really have (the cgroup limit, RLIMIT_AS or RLIMIT_DATA, the node's physical memory shared by the
// ranks on it). A model that cannot fit is a one-line error before the first allocation. The
// estimate is a lower bound (the layers' scratch buffers are not counted: measured 20-45% of the
// activations), so it refuses only what certainly cannot fit.
#pragma once
#include <string>

#include "train/config.h"

namespace meshlm {

struct MemoryEstimate {
  // bytes of this rank: fp32 masters, the 16-bit compute copy, gradients, Adam moments (each
  // whole or 1/dp by the ZeRO stage), ZeRO-2/3's windows (gathered weights, gradient windows)
  double masters = 0, compute = 0, grads = 0, moments = 0, working = 0, activations = 0;
  double params = 0;  // parameters of this rank's table
  double weights() const { return masters + compute; }
  double total() const { return masters + compute + grads + moments + working + activations; }
  // "1.2 GiB (masters 0.4, 16-bit copy 0.2, grads 0.4, Adam moments 0.2, ZeRO windows 0.1, activations 0.1)"
  std::string describe() const;
  // "4/2 + 2 + 4/2 + 8/2 = 10 bytes/parameter": the formula of the stage, and its value
  std::string formula;
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
