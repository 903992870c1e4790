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
// Regions laid out one after another, each rounded up to 32 bytes: a tile (kTcRows x HS, 16-bit),
// each warp's scores (16 x kTcRows) of `bytes` per value, each warp's rows of HS fp32, and
// kTcRows fp32 row statistics.
struct Carver {
  int64_t HS;
  size_t at = 0;
  size_t take(size_t bytes) {
    const size_t here = at;
    at += (bytes + 31) / 32 * 32;
    return here;
  }
  size_t tile() { return take(size_t(kTcRows * HS) * 2); }
  size_t scores(size_t bytes) { return take(size_t(kTcWarps * kTcWarpRows * kTcRows) * bytes); }
  size_t rows() { return take(size_t(kTcWarps * kTcWarpRows * HS) * 4); }
  size_t stats() { return take(size_t(kTcRows) * 4); }
};
}  // namespace

TcSmem tc_forward_smem(int64_t HS) {
  Carver c{HS};
  TcSmem m{};
  m.q = c.tile(), m.k = c.tile(), m.v = c.tile();
  m.s = c.scores(4), m.p = c.scores(2), m.acc = c.rows();  // each row's m and l live in registers
  m.bytes = c.at;
  return m;
}

TcSmem tc_dq_smem(int64_t HS) {
  Carver c{HS};
  TcSmem m{};
  m.q = c.tile(), m.dout = c.tile(), m.k = c.tile(), m.v = c.tile(), m.lse = c.stats(), m.delta = c.stats();
  m.s = c.scores(4), m.dp = c.scores(4), m.ds = c.scores(2), m.acc = c.rows();
  m.bytes = c.at;
  return m;
}

TcSmem tc_dkv_smem(int64_t HS) {
  Carver c{HS};
  TcSmem m{};
  m.k = c.tile(), m.v = c.tile(), m.q = c.tile(), m.dout = c.tile(), m.lse = c.stats(), m.delta = c.stats();
  m.s = c.scores(4), m.dp = c.scores(4), m.p = c.scores(2), m.ds = c.scores(2), m.acc = c.rows(), m.acc2 = c.rows();
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
