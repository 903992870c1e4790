#include "backend/cuda/bootstrap.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace meshlm::cuda {

int local_rank_from_env() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                           "LOCAL_RANK"}) {
    const char* v = std::getenv(name);
    if (v && *v) {
      char* end = nullptr;
      const long r = std::strtol(v, &end, 10);
      if (end && *end == '\0' && r >= 0) return int(r);
    }
  }
  return -1;
}

int choose_device(int requested, int local_rank, int device_count) {
  MESHLM_CHECK(device_count > 0, "cuda backend: no CUDA device");
  if (requested >= 0) {
    MESHLM_CHECK(requested < device_count, "cuda backend: device " + std::to_string(requested) + " of " +
                                               std::to_string(device_count));
    return requested;
  }
  return local_rank < 0 ? 0 : local_rank % device_count;
}

PaddedBlocks pad_blocks(const std::vector<int64_t>& counts) {
  PaddedBlocks p;
  int64_t at = 0;
  for (int64_t c : counts) {
    MESHLM_CHECK(c >= 0, "collective: a negative count");
    p.block = std::max(p.block, c);
    p.offset.push_back(at);
    at += c;
  }
  for (int64_t c : counts) p.padded = p.padded || c != p.block;
  return p;
}

}  // namespace meshlm::cuda
