// Real fp8 operands: quantize_fp8 (bf16 -> one-byte codes times a scale, row-major or
// transposed, with the amax) and the widening of codes to bf16 that gemm_fp8 runs on GPUs
// without fp8 tensor cores. The transposing quantizer goes through a 32 x 32 tile in shared
// memory (device_math.h tile_element), so a warp reads one row of x and writes one row of q.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

__global__ void quantize_fp8_kernel(SmallFormat f, uint8_t* q, const uint16_t* x, int64_t n, float scale,
                                    uint32_t* bits) {
  float a = 0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = bf16_to_f32(x[i]);
    if (is_finite(v)) a = fmaxf(a, abs_f(v));
    q[i] = fp8_code(f, v, scale);
  }
  if (bits) block_max_into_bits(bits, a);
}

// q (cols, rows) = codes of x (rows, cols)^T, one 32 x 32 tile at a time.
__global__ void quantize_fp8_transpose_kernel(SmallFormat f, uint8_t* q, const uint16_t* x, int64_t rows,
                                              int64_t cols, float scale, uint32_t* bits) {
  __shared__ uint8_t tile[kTile][kTile + 1];  // +1: no bank conflicts reading a column
  const int t = int(threadIdx.x);
  const int64_t tiles_c = (cols + kTile - 1) / kTile, tiles_r = (rows + kTile - 1) / kTile;
  float a = 0;
  for (int64_t tl = blockIdx.x; tl < tiles_r * tiles_c; tl += gridDim.x) {  // uniform in the block
    for (int k = 0; k < kTile / kTileRowsPerPass; k++) {
      const TileCoord e = tile_element(tl, tiles_c, t, k);
      if (e.row < rows && e.col < cols) {
        const float v = bf16_to_f32(x[e.row * cols + e.col]);
        if (is_finite(v)) a = fmaxf(a, abs_f(v));
        tile[t / kTile + kTileRowsPerPass * k][t % kTile] = fp8_code(f, v, scale);
      }
    }
    __syncthreads();
    const int64_t tq = transposed_tile(tl, tiles_r, tiles_c);  // the same tile of q (cols, rows)
    for (int k = 0; k < kTile / kTileRowsPerPass; k++) {
      const TileCoord e = tile_element(tq, tiles_r, t, k);
      if (e.row < cols && e.col < rows) q[e.row * rows + e.col] = tile[t % kTile][t / kTile + kTileRowsPerPass * k];
    }
    __syncthreads();  // the tile is rewritten by the next iteration
  }
  if (bits) block_max_into_bits(bits, a);
}

__global__ void fp8_to_bf16_kernel(SmallFormat f, uint16_t* dst, const uint8_t* src, int64_t rows, int64_t cols,
                                   int64_t ld) {
  for (int64_t i = global_thread(); i < rows * cols; i += grid_threads())
    dst[i] = f32_to_bf16(small_to_f32(f, src[(i / cols) * ld + i % cols]));  // exact: fp8 is in bf16
}

}  // namespace

void quantize_fp8(cudaStream_t s, DType format, uint8_t* q, const uint16_t* x, int64_t rows, int64_t cols,
                  float scale, bool transpose, uint32_t* amax_bits) {
  const SmallFormat f = small_format(format);
  if (!transpose) {
    MESHLM_LAUNCH(quantize_fp8_kernel, grid_stride(rows * cols, 256, 1024), s)(f, q, x, rows * cols, scale, amax_bits);
    return;
  }
  MESHLM_LAUNCH(quantize_fp8_transpose_kernel, tiles(rows, cols), s)(f, q, x, rows, cols, scale, amax_bits);
}

void fp8_to_bf16(cudaStream_t s, DType format, uint16_t* dst, const uint8_t* src, int64_t rows, int64_t cols,
                 int64_t ld) {
  MESHLM_LAUNCH(fp8_to_bf16_kernel, grid_stride(rows * cols), s)(small_format(format), dst, src, rows, cols, ld);
}

}  // namespace meshlm::cuda::k
