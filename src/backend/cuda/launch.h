// Launch shapes of the CUDA kernels and the sizes of their work spaces: plain host arithmetic
// (no CUDA headers), so the CPU tests check that every shape covers its elements exactly once
// and stays inside the hardware limits (tests/backend/test_cuda_host.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace meshlm::cuda {

struct Launch {
  uint32_t grid = 1, block = 1;
  size_t shared = 0;  // dynamic shared memory, bytes
};

constexpr uint32_t kMaxGrid = 0x7fffffffu;  // gridDim.x
constexpr uint32_t kMaxBlock = 1024;
constexpr size_t kDefaultShared = 48 * 1024;  // without the opt-in attribute

// A grid-stride loop over n elements: `block` threads, at most max_blocks blocks (threads then
// loop), at least one block.
Launch grid_stride(int64_t n, uint32_t block = 256, uint32_t max_blocks = 8192);
// One warp per row, `warps` rows per block.
Launch warp_rows(int64_t rows, uint32_t warps = 4);
// Row-chunked reductions (layernorm, rmsnorm and bias backward): each block takes kChunkRows
// consecutive rows and writes one partial row of C sums to a work space of chunks(N) x C.
constexpr int64_t kChunkRows = 32;
inline int64_t chunks(int64_t N) { return (N + kChunkRows - 1) / kChunkRows; }
// The fixed grid of the double-precision sums (sum, sum_squares): partials, summed in order.
constexpr uint32_t kSumBlocks = 256, kSumThreads = 256;

// Floats of device work space each op needs (the backend keeps one buffer, grown on demand).
int64_t layernorm_backward_scratch(int64_t N, int64_t C);   // dweight and dbias partials
int64_t rmsnorm_backward_scratch(int64_t N, int64_t C);     // dweight partials
int64_t bias_backward_scratch(int64_t N, int64_t OC);       // dbias partials
int64_t attention_backward_scratch(const AttentionShape& s);  // D = rowsum(dout * out), (B, NH, T)

// The tiles of a transposing kernel (device_math.h tile_element): kTileThreads threads a block,
// each block takes tiles blockIdx.x, + gridDim.x, ... of the (rows, cols) matrix.
Launch tiles(int64_t rows, int64_t cols);
int64_t tile_count(int64_t rows, int64_t cols);

// Tensor-core attention (attention_tc.cu): bf16 or fp16, head size a multiple of 16 up to 128,
// and its shared memory within the device's opt-in limit; otherwise the warp-per-row kernels.
// The dynamic shared memory of each kernel, carved into 32-byte aligned regions (wmma's rule):
//   forward  Q, K, V tiles (kTcRows x HS, 16-bit); per warp S (16 x kTcRows fp32), P (16-bit),
//            O (16 x HS fp32)
//   dq       Q, dO, K, V tiles; lse, D; per warp S, dP (fp32), dS (16-bit), dQ (fp32)
//   dkv      K, V, Q, dO tiles; lse, D; per warp S^T, dP^T (fp32), P^T, dS^T (16-bit), dK, dV
struct TcSmem {
  size_t q, k, v, dout, lse, delta, s, dp, p, ds, acc, acc2, bytes;
};
TcSmem tc_forward_smem(int64_t HS);
TcSmem tc_dq_smem(int64_t HS);
TcSmem tc_dkv_smem(int64_t HS);
bool tc_attention_fits(const AttentionShape& a, DType dt, size_t smem_optin);
// The blocks of each kernel: device_math.h tc_query_block, tc_key_block.

// Attention: one warp per query row (or key row in the dk/dv pass), a lane per 32nd channel.
constexpr int64_t kMaxHeadSize = 256;
constexpr uint32_t kAttentionWarps = 4;
Launch attention_rows(int64_t rows);
// Embedding backward: dwte rows are summed by token classes (token % kTokenClasses), one
// thread per (class, channel), so each row's additions keep the position order.
constexpr uint32_t kTokenClasses = 32;

}  // namespace meshlm::cuda
