// quantize_blocks on the device (ops.inc; reference/quantize.cpp is the definition): the block-
// scaled formats of the precision ladder (MX, NVFP4, fp8 current and row-wise scaling), with
// the optional Hadamard transform and stochastic rounding. Steps, each a kernel on the stream:
//   1. (Hadamard) each group of 16 along the axis transformed and rounded to bf16, into h
//   2. the tensor's amax over its finite values and whether it holds an inf or NaN
//   3. each scale block's amax and non-finite flag, a thread per block over its elements
//   4. each block's multiplier (block_mult), from its amax and the tensor's
//   5. each element quantized and read back, its counts summed per warp, then atomically
// The atomics are a max on the bits of non-negative floats and integer sums: exact and order-
// free, so the result is the same on every run. Only the counts and the amax come back.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/quantize_math.h"

namespace meshlm::cuda::k {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("cuda backend: quantize_blocks: ") + what + ": " + cudaGetErrorString(e));
}

__global__ void hadamard_kernel(uint16_t* h, const uint16_t* x, int axis, int64_t cols, int64_t groups,
                                uint16_t signs) {
  for (int64_t g = global_thread(); g < groups; g += grid_threads()) {
    const HadamardGroup G = hadamard_group(axis, cols, g);
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = bf16_to_f32(x[G.first + i * G.stride]);
    hadamard16_local(v, signs);
    for (int i = 0; i < 16; i++) h[G.first + i * G.stride] = f32_to_bf16(v[i]);
  }
}

// st[0] = bits of the finite amax, st[1] = 1 if any value is inf or NaN.
__global__ void tensor_amax_kernel(const uint16_t* x, int64_t n, uint32_t* st) {
  float a = 0;
  bool nonfinite = false;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = abs_f(bf16_to_f32(x[i]));
    if (is_finite(v)) a = fmaxf(a, v);
    else nonfinite = true;
  }
  block_max_into_bits(st, a);
  if (__syncthreads_or(nonfinite) && threadIdx.x == 0) atomicOr(st + 1, 1u);
}

// amax[b], flag[b] of each scale block b, one thread a block.
__global__ void block_amax_kernel(QuantParams q, const uint16_t* x, int64_t rows, int64_t cols, int64_t nblocks,
                                  float* amax, uint32_t* flag) {
  for (int64_t b = global_thread(); b < nblocks; b += grid_threads()) {
    const BlockRange R = block_range(q, rows, cols, b);
    float a = 0;
    uint32_t nonfinite = 0;
    for (int64_t r = R.r0; r < R.r1; r++)
      for (int64_t c = R.c0; c < R.c1; c++) {
        const float v = abs_f(bf16_to_f32(x[r * cols + c]));
        if (is_finite(v)) a = fmaxf(a, v);
        else nonfinite = 1;
      }
    amax[b] = a;
    flag[b] = nonfinite;
  }
}

// m[b] = the block's multiplier; with tensor granularity the block is the tensor (st).
__global__ void multiplier_kernel(QuantParams q, const uint32_t* st, const float* amax, const uint32_t* flag,
                                  int64_t nblocks, float* m) {
  const float tensor_amax = u2f(st[0]);
  const float S = q.scale == ScaleKind::e4m3 ? e4m3_scale_of_tensor(q.f, tensor_amax) : 1.0f;
  for (int64_t b = global_thread(); b < nblocks; b += grid_threads()) {
    const bool whole = q.granularity == Granularity::tensor;
    m[b] = block_mult(q, whole ? tensor_amax : amax[b], whole ? st[1] != 0 : flag[b] != 0, S);
  }
}

__device__ uint32_t warp_count(bool v) { return uint32_t(__popc(__ballot_sync(0xffffffffu, v))); }

// y = the read-back of every element; counts[0..3] += overflow, zero, underflow, subnormal.
__global__ void quantize_kernel(QuantParams q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols,
                                const float* m, unsigned long long* counts) {
  const int64_t n = rows * cols;
  uint32_t c[4] = {0, 0, 0, 0};
  // Every lane runs the same number of iterations (the ballots need the whole warp).
  const int64_t stride = grid_threads(), start = global_thread() - threadIdx.x % kWarp;
  for (int64_t base = start; base < n; base += stride) {
    const int64_t i = base + threadIdx.x % kWarp;
    QuantOut o{0.0f, false, false, false, false};
    if (i < n) {
      o = quantize_element(q, bf16_to_f32(x[i]), m[block_of(q, cols, i / cols, i % cols)], i);
      y[i] = f32_to_bf16(o.y);
    }
    c[0] += warp_count(o.overflow);
    c[1] += warp_count(o.zero);
    c[2] += warp_count(o.underflow);
    c[3] += warp_count(o.subnormal);
  }
  if (threadIdx.x % kWarp == 0)
    for (int k = 0; k < 4; k++)
      if (c[k]) atomicAdd(counts + k, (unsigned long long)c[k]);
}

}  // namespace

QuantWork quantize_work(const QuantSpec& q, int64_t rows, int64_t cols) {
  QuantWork w;
  w.blocks = rows * cols == 0 ? 0 : block_count(quant_params(q), rows, cols);
  w.hadamard_bytes = q.hadamard ? size_t(rows * cols) * 2 : 0;
  // h (bf16, 16-byte aligned), amax and flags and multipliers (blocks each), counts, tensor state
  const size_t h = (w.hadamard_bytes + 15) / 16 * 16;
  w.bytes = h + size_t(w.blocks) * 12 + 4 * 8 + 2 * 4;
  return w;
}

void quantize_blocks(cudaStream_t s, const QuantSpec& spec, uint16_t* y, const uint16_t* x, int64_t rows,
                     int64_t cols, void* work, uint64_t* host_counts, float* host_amax) {
  const QuantParams q = quant_params(spec);
  const int64_t n = rows * cols;
  const QuantWork w = quantize_work(spec, rows, cols);
  unsigned char* p = static_cast<unsigned char*>(work);
  uint16_t* h = reinterpret_cast<uint16_t*>(p);
  p += (w.hadamard_bytes + 15) / 16 * 16;
  auto* counts = reinterpret_cast<unsigned long long*>(p);  // 4, 8-byte aligned
  uint32_t* st = reinterpret_cast<uint32_t*>(counts + 4);   // 2
  float* amax = reinterpret_cast<float*>(st + 2);           // blocks
  uint32_t* flag = reinterpret_cast<uint32_t*>(amax + w.blocks);
  float* m = reinterpret_cast<float*>(flag + w.blocks);
  check(cudaMemsetAsync(counts, 0, 4 * 8 + 2 * 4, s), "zeroing the counts");
  if (n > 0) {
    const uint16_t* src = x;
    if (spec.hadamard) {
      const int64_t len = spec.axis == 1 ? cols : rows;
      MESHLM_CHECK(len % 16 == 0, "quantize_blocks: the Hadamard transform needs a multiple of 16 along the axis");
      MESHLM_LAUNCH(hadamard_kernel, grid_stride(n / 16), s)(h, x, spec.axis, cols, n / 16, q.signs);
      src = h;
    }
    MESHLM_LAUNCH(tensor_amax_kernel, grid_stride(n, 256, 1024), s)(src, n, st);
    if (spec.granularity != Granularity::tensor)
      MESHLM_LAUNCH(block_amax_kernel, grid_stride(w.blocks), s)(q, src, rows, cols, w.blocks, amax, flag);
    MESHLM_LAUNCH(multiplier_kernel, grid_stride(w.blocks), s)(q, st, amax, flag, w.blocks, m);
    MESHLM_LAUNCH(quantize_kernel, grid_stride(n), s)(q, y, src, rows, cols, m, counts);
  }
  uint64_t back[5] = {};
  check(cudaMemcpyAsync(back, counts, 4 * 8 + 4, cudaMemcpyDeviceToHost, s), "reading the counts");  // and the amax bits
  check(cudaStreamSynchronize(s), "quantizing");
  for (int k = 0; k < 4; k++) host_counts[k] = back[k];
  *host_amax = u2f(uint32_t(back[4]));
}

}  // namespace meshlm::cuda::k
