// Reductions to scalars: the double-precision sums (a fixed grid of kSumBlocks blocks writes
// partials that the backend adds on the host in block order: the same result on every run),
// and the fp8 amax (a max, so an atomic on the bits of a non-negative float is exact and
// order-free).
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

template <class S>
__global__ void sum_kernel(Format fm, const S* x, int64_t n, bool squares, double* partials) {
  __shared__ double shared[kWarp];
  double acc = 0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const double v = double(ld(x, i, fm));
    acc += squares ? v * v : v;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sum_kernel_f64(const double* x, int64_t n, bool squares, double* partials) {
  __shared__ double shared[kWarp];
  double acc = 0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) acc += squares ? x[i] * x[i] : x[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void amax_kernel(const uint16_t* x, int64_t n, uint32_t* bits) {
  float a = 0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = abs_f(bf16_to_f32(x[i]));
    if (is_finite(v)) a = fmaxf(a, v);
  }
  block_max_into_bits(bits, a);
}

// y = bf16(fp8(clamp(x * scale)) / scale) (reference::fake_quantize_bf16), non-finite x as is.
__global__ void fake_quantize_kernel(SmallFormat f, uint16_t* y, const uint16_t* x, int64_t n, float scale,
                                     uint32_t* bits) {
  float a = 0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = bf16_to_f32(x[i]);
    if (!is_finite(v)) {
      y[i] = x[i];
      continue;
    }
    a = fmaxf(a, abs_f(v));
    const float r = fminf(fmaxf(v * scale, -f.max_finite), f.max_finite);
    y[i] = f32_to_bf16(small_to_f32(f, small_from_f32(f, r, -1.0)) / scale);
  }
  block_max_into_bits(bits, a);
}

}  // namespace

void sum_partials(cudaStream_t s, DType dt, const void* x, int64_t n, bool squares, double* partials) {
  const Launch L{kSumBlocks, kSumThreads, 0};
  if (dt == DType::fp64) {
    MESHLM_LAUNCH(sum_kernel_f64, L, s)(static_cast<const double*>(x), n, squares, partials);
    return;
  }
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(sum_kernel<S>, L, s)(format_of(dt), static_cast<const S*>(x), n, squares, partials);
  });
}

void amax_bf16(cudaStream_t s, const uint16_t* x, int64_t n, uint32_t* amax_bits) {
  MESHLM_LAUNCH(amax_kernel, grid_stride(n, 256, 1024), s)(x, n, amax_bits);
}

void fake_quantize_bf16(cudaStream_t s, DType format, uint16_t* y, const uint16_t* x, int64_t n, float scale,
                        uint32_t* amax_bits) {
  MESHLM_LAUNCH(fake_quantize_kernel, grid_stride(n, 256, 1024), s)(small_format(format), y, x, n, scale, amax_bits);
}

}  // namespace meshlm::cuda::k
