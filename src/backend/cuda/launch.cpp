#include "backend/cuda/launch.h"

#include <algorithm>

#include "backend/cuda/device_math.h"
#include "core/error.h"

namespace meshlm::cuda {

Launch grid_stride(int64_t n, uint32_t block, uint32_t max_blocks) {
  const int64_t blocks = std::clamp<int64_t>((n + block - 1) / block, 1, max_blocks);
  return {uint32_t(blocks), block, 0};
}

Launch warp_rows(int64_t rows, uint32_t warps) {
  const int64_t blocks = std::max<int64_t>((rows + warps - 1) / warps, 1);
  MESHLM_CHECK(blocks <= kMaxGrid, "cuda: too many rows for one launch: " + std::to_string(rows));
  return {uint32_t(blocks), warps * 32, 0};
}

int64_t tile_count(int64_t rows, int64_t cols) {
  return ((rows + kTile - 1) / kTile) * ((cols + kTile - 1) / kTile);
}
Launch tiles(int64_t rows, int64_t cols) {
  return {uint32_t(std::clamp<int64_t>(tile_count(rows, cols), 1, 8192)), uint32_t(kTileThreads), 0};
}

int64_t layernorm_backward_scratch(int64_t N, int64_t C) { return chunks(N) * 2 * C; }
int64_t rmsnorm_backward_scratch(int64_t N, int64_t C) { return chunks(N) * C; }
int64_t bias_backward_scratch(int64_t N, int64_t OC) { return chunks(N) * OC; }
int64_t attention_backward_scratch(const AttentionShape& s) { return s.B * s.NH * s.T; }

Launch attention_rows(int64_t rows) {
  Launch L = warp_rows(rows, kAttentionWarps);
  L.shared = size_t(kAttentionWarps) * 2 * kMaxHeadSize * sizeof(float);  // two rows per warp
  return L;
}

}  // namespace meshlm::cuda
