// Host logic of the cuda backend and its NCCL communicator that needs no GPU (the CPU tests run
// it): which device a rank takes, and how collectives with uneven counts become NCCL's equal
// ones (NCCL's reduce-scatter and all-gather take one count for every rank).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace meshlm::cuda {

// The rank of this process among those on its host, from the launcher's environment (Open MPI,
// Slurm, MPICH/PMI); -1 when none says.
int local_rank_from_env();
// The device of a rank: local_rank modulo the device count (local rank -1 means 0), or the
// explicit choice when >= 0; throws meshlm::Error when there is no device.
int choose_device(int requested, int local_rank, int device_count);

// An uneven collective over equal blocks: every rank's block padded to the largest count.
struct PaddedBlocks {
  int64_t block = 0;               // the padded count, max(counts)
  std::vector<int64_t> offset;     // where rank r's elements start in the caller's dense buffer
  int64_t total() const { return block * int64_t(offset.size()); }
  bool padded = false;             // false when every count is already `block` (no staging)
};
PaddedBlocks pad_blocks(const std::vector<int64_t>& counts);

}  // namespace meshlm::cuda
