// The softmax cross-entropy and its vocabulary-parallel pieces: one block per row, two passes
// (the row max, then the sum of exp(x - max)) with fixed-order block reductions; the gradient
// overwrites the logits in place.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

constexpr uint32_t kBlock = 512;

// log sum exp of the row's first V values (-inf when V = 0), in every thread.
template <class S>
__device__ float row_lse(const Format& fm, const S* row, int64_t V, float* shared) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, ld(row, i, fm));
  m = block_max(m, shared);
  if (m == -INFINITY) return -INFINITY;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) sum += expf(ld(row, i, fm) - m);
  return m + logf(block_sum(sum, shared));
}

// row <- dloss * (exp(x - lse) - onehot(target)) over [0, V), 0 over [V, Vp).
template <class S>
__device__ void row_gradient(const Format& fm, S* row, float lse, int32_t target, float dloss, int64_t V, int64_t Vp) {
  for (int64_t i = threadIdx.x; i < Vp; i += blockDim.x) {
    const float g = i < V ? dloss * (expf(ld(row, i, fm) - lse) - (i == target ? 1.0f : 0.0f)) : 0.0f;
    st(row, i, g, fm);
  }
}

template <class S>
__global__ void crossentropy_kernel(Format fm, float* losses, S* logits, const int32_t* targets, float dloss,
                                    int64_t V, int64_t Vp) {
  __shared__ float shared[kWarp];
  S* row = logits + int64_t(blockIdx.x) * Vp;
  const int32_t target = targets[blockIdx.x];
  const float lse = row_lse(fm, row, V, shared);
  const float target_logit = ld(row, target, fm);
  __syncthreads();  // every thread has read the target logit before any overwrites it
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - target_logit;
  if (dloss != 0.0f) row_gradient(fm, row, lse, target, dloss, V, Vp);
}

template <class S>
__global__ void lse_kernel(Format fm, float* lse, const S* logits, int64_t V, int64_t Vp) {
  __shared__ float shared[kWarp];
  const float l = row_lse(fm, logits + int64_t(blockIdx.x) * Vp, V, shared);
  if (threadIdx.x == 0) lse[blockIdx.x] = l;
}

template <class S>
__global__ void partials_kernel(Format fm, float* sumexp, float* target_logit, int32_t* local_targets,
                                const float* lse, const float* row_max, const S* logits, const int32_t* targets,
                                int64_t N, int64_t v0, int64_t Vl) {
  for (int64_t n = global_thread(); n < N; n += grid_threads()) {
    sumexp[n] = is_finite(lse[n]) ? expf(lse[n] - row_max[n]) : 0.0f;
    const int64_t t = targets[n] - v0;
    const bool here = t >= 0 && t < Vl;
    local_targets[n] = here ? int32_t(t) : -1;
    target_logit[n] = here ? ld(logits, n * Vl + t, fm) : 0.0f;
  }
}

__global__ void combine_kernel(float* lse, float* losses, const float* row_max, const float* sumexp,
                               const float* target_logit, int64_t N) {
  for (int64_t n = global_thread(); n < N; n += grid_threads()) {
    lse[n] = row_max[n] + logf(sumexp[n]);
    losses[n] = lse[n] - target_logit[n];
  }
}

template <class S>
__global__ void backward_given_lse_kernel(Format fm, S* logits, const float* lse, const int32_t* targets, float dloss,
                                          int64_t V, int64_t Vp) {
  row_gradient(fm, logits + int64_t(blockIdx.x) * Vp, lse[blockIdx.x], targets[blockIdx.x], dloss, V, Vp);
}

uint32_t rows(int64_t N) {
  MESHLM_CHECK(N <= kMaxGrid, "cuda backend: too many rows for the cross-entropy");
  return uint32_t(N);
}

}  // namespace

void crossentropy_forward_backward(cudaStream_t s, DType dt, float* losses, void* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    crossentropy_kernel<S><<<rows(N), kBlock, 0, s>>>(format_of(dt), losses, (S*)logits, targets, dloss, V, Vp);
  });
}
void logsumexp_rows(cudaStream_t s, DType dt, float* lse, const void* logits, int64_t N, int64_t V, int64_t Vp) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    lse_kernel<S><<<rows(N), kBlock, 0, s>>>(format_of(dt), lse, (const S*)logits, V, Vp);
  });
}
void crossentropy_partials(cudaStream_t s, DType dt, float* sumexp, float* target_logit, int32_t* local_targets,
                           const float* lse, const float* row_max, const void* logits, const int32_t* targets,
                           int64_t N, int64_t v0, int64_t Vl) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(partials_kernel<S>, grid_stride(N), s)(format_of(dt), sumexp, target_logit, local_targets, lse,
                                                          row_max, (const S*)logits, targets, N, v0, Vl);
  });
}
void crossentropy_combine(cudaStream_t s, float* lse, float* losses, const float* row_max, const float* sumexp,
                          const float* target_logit, int64_t N) {
  if (N == 0) return;
  MESHLM_LAUNCH(combine_kernel, grid_stride(N), s)(lse, losses, row_max, sumexp, target_logit, N);
}
void crossentropy_backward_given_lse(cudaStream_t s, DType dt, void* logits, const float* lse,
                                     const int32_t* targets, float dloss, int64_t N, int64_t V, int64_t Vp) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    backward_given_lse_kernel<S><<<rows(N), kBlock, 0, s>>>(format_of(dt), (S*)logits, lse, targets, dloss, V, Vp);
  });
}

}  // namespace meshlm::cuda::k
