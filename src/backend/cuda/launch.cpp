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

namespace {
// Regions laid out one after another, each rounded up to 32 bytes.
struct Carver {
  size_t at = 0;
  size_t take(size_t bytes) {
    const size_t here = at;
    at += (bytes + 31) / 32 * 32;
    return here;
  }
};
}  // namespace

TcSmem tc_forward_smem(int64_t HS) {
  const size_t tile = size_t(kTcRows * HS) * 2, warp_s = size_t(kTcWarps * kTcWarpRows * kTcRows);
  Carver c;
  TcSmem m{};
  m.q = c.take(tile), m.k = c.take(tile), m.v = c.take(tile);
  m.s = c.take(warp_s * 4), m.p = c.take(warp_s * 2);
  m.acc = c.take(size_t(kTcWarps * kTcWarpRows * HS) * 4);
  m.stats = c.take(size_t(2 * kTcRows) * 4);
  m.bytes = c.at;
  return m;
}

TcSmem tc_dq_smem(int64_t HS) {
  const size_t tile = size_t(kTcRows * HS) * 2, warp_s = size_t(kTcWarps * kTcWarpRows * kTcRows);
  Carver c;
  TcSmem m{};
  m.q = c.take(tile), m.dout = c.take(tile), m.k = c.take(tile), m.v = c.take(tile);
  m.lse = c.take(size_t(kTcRows) * 4), m.delta = c.take(size_t(kTcRows) * 4);
  m.s = c.take(warp_s * 4), m.dp = c.take(warp_s * 4), m.ds = c.take(warp_s * 2);
  m.acc = c.take(size_t(kTcWarps * kTcWarpRows * HS) * 4);
  m.bytes = c.at;
  return m;
}

TcSmem tc_dkv_smem(int64_t HS) {
  const size_t tile = size_t(kTcRows * HS) * 2, warp_s = size_t(kTcWarps * kTcWarpRows * kTcRows);
  Carver c;
  TcSmem m{};
  m.k = c.take(tile), m.v = c.take(tile), m.q = c.take(tile), m.dout = c.take(tile);
  m.lse = c.take(size_t(kTcRows) * 4), m.delta = c.take(size_t(kTcRows) * 4);
  m.s = c.take(warp_s * 4), m.dp = c.take(warp_s * 4), m.p = c.take(warp_s * 2), m.ds = c.take(warp_s * 2);
  m.acc = c.take(size_t(kTcWarps * kTcWarpRows * HS) * 4), m.acc2 = c.take(size_t(kTcWarps * kTcWarpRows * HS) * 4);
  m.bytes = c.at;
  return m;
}

bool tc_attention_fits(const AttentionShape& a, DType dt, size_t smem_optin) {
  if (dt != DType::bf16 && dt != DType::fp16) return false;
  if (a.HS % 16 != 0 || a.HS < 16 || a.HS > 128) return false;
  const size_t need = std::max({tc_forward_smem(a.HS).bytes, tc_dq_smem(a.HS).bytes, tc_dkv_smem(a.HS).bytes});
  return need <= smem_optin;
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
