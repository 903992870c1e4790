// Token and position embeddings. Backward is deterministic without atomics: dwte rows are summed
// by kTokenClasses threads per channel, thread (class, c) adding the positions whose token is in
// its class in position order (one token's rows always fall to the same thread); dwpe by one
// thread per (t, c) over the batch in order.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

template <class S>
__global__ void embedding_forward_kernel(Format fm, S* out, const int32_t* tokens, const S* wte, const S* wpe,
                                         int64_t B, int64_t T, int64_t C) {
  const int64_t n = B * T * C;
  for (int64_t e = global_thread(); e < n; e += grid_threads()) {
    const int64_t c = e % C, bt = e / C, t = bt % T;
    const int32_t tok = tokens[bt];
    float x = tok >= 0 ? ld(wte, int64_t(tok) * C + c, fm) : 0.0f;
    if (wpe) x += ld(wpe, t * C + c, fm);
    st(out, e, x, fm);
  }
}

// Block (channel chunk, class); thread per channel. Tokens staged through shared memory.
template <class S>
__global__ void dwte_kernel(Format fm, float* dwte, const S* dout, const int32_t* tokens, int64_t N, int64_t C) {
  constexpr int kStage = 1024;
  __shared__ int32_t toks[kStage];
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int32_t cls = int32_t(blockIdx.y);
  for (int64_t i0 = 0; i0 < N; i0 += kStage) {
    const int64_t m = N - i0 < kStage ? N - i0 : kStage;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) toks[j] = tokens[i0 + j];
    __syncthreads();
    if (c >= C) continue;
    for (int64_t j = 0; j < m; j++) {
      const int32_t tok = toks[j];
      if (tok >= 0 && tok % int32_t(kTokenClasses) == cls) dwte[int64_t(tok) * C + c] += ld(dout, (i0 + j) * C + c, fm);
    }
  }
}

template <class S>
__global__ void dwpe_kernel(Format fm, float* dwpe, const S* dout, int64_t B, int64_t T, int64_t C) {
  for (int64_t e = global_thread(); e < T * C; e += grid_threads()) {
    float acc = 0;
    for (int64_t b = 0; b < B; b++) acc += ld(dout, b * T * C + e, fm);
    dwpe[e] += acc;
  }
}

}  // namespace

void embedding_forward(cudaStream_t s, DType dt, void* out, const int32_t* tokens, const void* wte, const void* wpe,
                       int64_t B, int64_t T, int64_t C) {
  const int64_t n = B * T * C;
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(embedding_forward_kernel<S>, grid_stride(n), s)(format_of(dt), (S*)out, tokens, (const S*)wte,
                                                                   (const S*)wpe, B, T, C);
  });
}

void embedding_backward(cudaStream_t s, DType dt, float* dwte, float* dwpe, const void* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C) {
  if (B * T * C == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    if (dwte) {
      const dim3 grid(uint32_t((C + 127) / 128), kTokenClasses);
      dwte_kernel<S><<<grid, 128, 0, s>>>(format_of(dt), dwte, (const S*)dout, tokens, B * T, C);
    }
    if (dwpe) MESHLM_LAUNCH(dwpe_kernel<S>, grid_stride(T * C), s)(format_of(dt), dwpe, (const S*)dout, B, T, C);
  });
}

}  // namespace meshlm::cuda::k
