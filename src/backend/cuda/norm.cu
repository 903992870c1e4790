// Layernorm (with the residual add before it fused), RMSNorm, and the bias gradient. Forward:
// one warp per row, two passes (mean, then squared deviations). Backward: a block per chunk of
// kChunkRows rows; dinp row by row, and each block's partial dweight/dbias rows into a work
// space that a second kernel sums over the chunks in order (deterministic, no atomics).
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

template <class S>
__global__ void layernorm_forward_kernel(Format fm, S* sum, S* out, float* mean, float* rstd, const S* a, const S* b,
                                         const S* w, const S* bias, int64_t N, int64_t C) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const S* x = b ? sum + row * C : a + row * C;
  float s = 0;
  for (int64_t c = lane; c < C; c += kWarp) {
    if (b) st(sum + row * C, c, ld(a + row * C, c, fm) + ld(b + row * C, c, fm), fm);  // the stored sum
    s += ld(x, c, fm);
  }
  const float m = warp_sum(s) / float(C);
  float d2 = 0;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float d = ld(x, c, fm) - m;
    d2 += d * d;
  }
  const float r = layernorm_rstd(warp_sum(d2), C);
  for (int64_t c = lane; c < C; c += kWarp)
    st(out + row * C, c, (ld(x, c, fm) - m) * r * ld(w, c, fm) + ld(bias, c, fm), fm);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// Block per chunk: for each row, the two means (block sums), then dinp and the partials.
template <class S>
__global__ void layernorm_backward_kernel(Format fm, S* dinp, float* part, const S* dout, const S* inp, const S* w,
                                          const float* mean, const float* rstd, int64_t N, int64_t C) {
  __shared__ float shared[kWarp];
  const int64_t r0 = int64_t(blockIdx.x) * kChunkRows, r1 = r0 + kChunkRows < N ? r0 + kChunkRows : N;
  float* pw = part + int64_t(blockIdx.x) * 2 * C;  // dweight partial, then dbias partial
  for (int64_t c = threadIdx.x; c < 2 * C; c += blockDim.x) pw[c] = 0;
  __syncthreads();
  for (int64_t n = r0; n < r1; n++) {
    const S *x = inp + n * C, *g = dout + n * C;
    const float m = mean[n], r = rstd[n];
    float sd = 0, sdx = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float xhat = (ld(x, c, fm) - m) * r, gw = ld(g, c, fm) * ld(w, c, fm);
      sd += gw;
      sdx += gw * xhat;
    }
    const float mean_d = block_sum(sd, shared) / float(C);
    const float mean_dx = block_sum(sdx, shared) / float(C);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float xhat = (ld(x, c, fm) - m) * r, gc = ld(g, c, fm);
      pw[C + c] += gc;
      pw[c] += gc * xhat;
      st(dinp + n * C, c, ld(dinp + n * C, c, fm) + r * (gc * ld(w, c, fm) - mean_d - xhat * mean_dx), fm);
    }
  }
}

// out[c] += sum over the chunks k of part[k * stride + offset + c], in chunk order.
__global__ void sum_chunks_kernel(float* out, const float* part, int64_t nchunks, int64_t stride, int64_t offset,
                                  int64_t C) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    float acc = 0;
    for (int64_t k = 0; k < nchunks; k++) acc += part[k * stride + offset + c];
    out[c] += acc;
  }
}

template <class S>
__global__ void rmsnorm_forward_kernel(Format fm, S* out, float* rstd, const S* inp, const S* w, int64_t N, int64_t C,
                                       float eps) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const S* x = inp + row * C;
  float s = 0;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float v = ld(x, c, fm);
    s += v * v;
  }
  const float r = 1.0f / sqrtf(warp_sum(s) / float(C) + eps);
  for (int64_t c = lane; c < C; c += kWarp) st(out + row * C, c, ld(x, c, fm) * r * ld(w, c, fm), fm);
  if (lane == 0) rstd[row] = r;
}

template <class S>
__global__ void rmsnorm_backward_kernel(Format fm, S* dinp, float* part, const S* dout, const S* inp, const S* w,
                                        const float* rstd, int64_t N, int64_t C) {
  __shared__ float shared[kWarp];
  const int64_t r0 = int64_t(blockIdx.x) * kChunkRows, r1 = r0 + kChunkRows < N ? r0 + kChunkRows : N;
  float* pw = part + int64_t(blockIdx.x) * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) pw[c] = 0;
  __syncthreads();
  for (int64_t n = r0; n < r1; n++) {
    const S *x = inp + n * C, *g = dout + n * C;
    const float r = rstd[n];
    float sd = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sd += ld(g, c, fm) * ld(w, c, fm) * ld(x, c, fm);
    const float dot = block_sum(sd, shared) / float(C);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float gc = ld(g, c, fm), xc = ld(x, c, fm);
      pw[c] += gc * xc * r;
      st(dinp + n * C, c, ld(dinp + n * C, c, fm) + (r * gc * ld(w, c, fm) - r * r * r * xc * dot), fm);
    }
  }
}

// part[chunk][o] = sum of dout[n][o] over the chunk's rows; one thread per column o.
template <class S>
__global__ void bias_partials_kernel(Format fm, float* part, const S* dout, int64_t N, int64_t OC) {
  const int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  const int64_t r0 = int64_t(blockIdx.y) * kChunkRows, r1 = r0 + kChunkRows < N ? r0 + kChunkRows : N;
  float acc = 0;
  for (int64_t n = r0; n < r1; n++) acc += ld(dout, n * OC + o, fm);
  part[int64_t(blockIdx.y) * OC + o] = acc;
}

constexpr uint32_t kRowBlock = 256;

}  // namespace

void layernorm_forward(cudaStream_t s, DType dt, void* sum, void* out, float* mean, float* rstd, const void* a,
                       const void* b, const void* w, const void* bias, int64_t N, int64_t C) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(layernorm_forward_kernel<S>, warp_rows(N), s)(format_of(dt), (S*)sum, (S*)out, mean, rstd,
                                                                 (const S*)a, (const S*)b, (const S*)w,
                                                                 (const S*)bias, N, C);
  });
}

void layernorm_backward(cudaStream_t s, DType dt, void* dinp, float* dw, float* db, const void* dout,
                        const void* inp, const void* w, const float* mean, const float* rstd, int64_t N, int64_t C,
                        float* scratch) {
  if (N == 0) return;
  const int64_t nc = chunks(N);
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    layernorm_backward_kernel<S><<<uint32_t(nc), kRowBlock, 0, s>>>(format_of(dt), (S*)dinp, scratch,
                                                                     (const S*)dout, (const S*)inp, (const S*)w, mean,
                                                                     rstd, N, C);
  });
  MESHLM_LAUNCH(sum_chunks_kernel, grid_stride(C), s)(dw, scratch, nc, 2 * C, 0, C);
  MESHLM_LAUNCH(sum_chunks_kernel, grid_stride(C), s)(db, scratch, nc, 2 * C, C, C);
}

void rmsnorm_forward(cudaStream_t s, DType dt, void* out, float* rstd, const void* inp, const void* w, int64_t N,
                     int64_t C, float eps) {
  if (N == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(rmsnorm_forward_kernel<S>, warp_rows(N), s)(format_of(dt), (S*)out, rstd, (const S*)inp,
                                                               (const S*)w, N, C, eps);
  });
}

void rmsnorm_backward(cudaStream_t s, DType dt, void* dinp, float* dw, const void* dout, const void* inp,
                      const void* w, const float* rstd, int64_t N, int64_t C, float* scratch) {
  if (N == 0) return;
  const int64_t nc = chunks(N);
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    rmsnorm_backward_kernel<S><<<uint32_t(nc), kRowBlock, 0, s>>>(format_of(dt), (S*)dinp, scratch, (const S*)dout,
                                                                   (const S*)inp, (const S*)w, rstd, N, C);
  });
  MESHLM_LAUNCH(sum_chunks_kernel, grid_stride(C), s)(dw, scratch, nc, C, 0, C);
}

void bias_backward(cudaStream_t s, DType dt, float* dbias, const void* dout, int64_t N, int64_t OC, float* scratch) {
  if (N == 0) return;
  const int64_t nc = chunks(N);
  MESHLM_CHECK(nc <= 65535, "cuda backend: bias_backward over more than 2M rows");
  const dim3 grid(uint32_t((OC + kRowBlock - 1) / kRowBlock), uint32_t(nc));
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    bias_partials_kernel<S><<<grid, kRowBlock, 0, s>>>(format_of(dt), scratch, (const S*)dout, N, OC);
  });
  MESHLM_LAUNCH(sum_chunks_kernel, grid_stride(OC), s)(dbias, scratch, nc, OC, 0, OC);
}

}  // namespace meshlm::cuda::k
