// What every CUDA kernel file shares: loads and stores of fp32 or 16-bit buffers (computed in
// fp32, rounded once on store), and the fixed-order warp and block reductions whose order
// device_math.h replays on the host.
#pragma once
#include <cuda_runtime.h>

#include "backend/cuda/device_math.h"
#include "backend/cuda/launch.h"
#include "core/error.h"

namespace meshlm::cuda {

// fp32 buffers, or 16-bit ones in format fm (bf16 or fp16).
__device__ __forceinline__ float ld(const float* p, int64_t i, const Format&) { return p[i]; }
__device__ __forceinline__ float ld(const uint16_t* p, int64_t i, const Format& fm) { return from_bits(fm, p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float x, const Format&) { p[i] = x; }
__device__ __forceinline__ void st(uint16_t* p, int64_t i, float x, const Format& fm) { p[i] = to_bits(fm, x); }

__device__ __forceinline__ int64_t global_thread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

// The xor butterfly: every lane ends with the same value (warp_sum_sim).
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32) in every thread; `shared` holds 32 values.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_sum(lane < nw ? shared[lane] : T(0));
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_max(lane < nw ? shared[lane] : -INFINITY);
}

// *bits = max(*bits, the bits of the block's max of a >= 0): an atomic max on the bits of
// non-negative floats is exact and order-free (the amax of the fp8 quantizers).
__device__ __forceinline__ void block_max_into_bits(uint32_t* bits, float a) {
  __shared__ float shared[kWarp];
  const float m = block_max(a, shared);
  if (threadIdx.x == 0 && m > 0) atomicMax(bits, f2u(m));
}

// Calls f(S{}) with S the storage type of dt's buffers: float, or uint16_t for bf16 and fp16.
template <class F>
void with_storage(DType dt, F&& f) {
  if (dt == DType::fp32) return f(float{});
  if (dt == DType::bf16 || dt == DType::fp16) return f(uint16_t{});
  throw Error(std::string("cuda backend: no kernel for ") + dtype_name(dt) + " buffers");
}

#define MESHLM_LAUNCH(kernel, L, stream) kernel<<<(L).grid, (L).block, (L).shared, (stream)>>>

}  // namespace meshlm::cuda
