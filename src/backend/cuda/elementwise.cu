// Element-wise kernels: conversions, residual, GELU, SwiGLU, RoPE and AdamW. Each thread walks
// a grid-stride loop over elements and applies a device_math.h function.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

// A value of any DType as fp32 (fp64 through double) and back.
__device__ float load_any(DType dt, const Format& fm, const void* p, int64_t i) {
  switch (dt) {
    case DType::fp32: return static_cast<const float*>(p)[i];
    case DType::fp64: return float(static_cast<const double*>(p)[i]);
    case DType::bf16: case DType::fp16: return from_bits(fm, static_cast<const uint16_t*>(p)[i]);
    default: return from_bits(fm, static_cast<const uint8_t*>(p)[i]);
  }
}
__device__ void store_any(DType dt, const Format& fm, void* p, int64_t i, float x) {
  switch (dt) {
    case DType::fp32: static_cast<float*>(p)[i] = x; break;
    case DType::fp64: static_cast<double*>(p)[i] = double(x); break;
    case DType::bf16: case DType::fp16: static_cast<uint16_t*>(p)[i] = to_bits(fm, x); break;
    default: static_cast<uint8_t*>(p)[i] = uint8_t(to_bits(fm, x)); break;
  }
}

__global__ void convert_kernel(DType to, Format fto, void* dst, DType from, Format ffrom, const void* src, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    if (to == DType::fp64 && from == DType::fp64) static_cast<double*>(dst)[i] = static_cast<const double*>(src)[i];
    else store_any(to, fto, dst, i, load_any(from, ffrom, src, i));
  }
}

__global__ void convert_stochastic_kernel(Format fm, uint16_t* dst, const float* src, int64_t n, uint64_t base,
                                          int64_t index0) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    dst[i] = to_bits_stochastic(fm, src[i], random_bits(base, uint64_t(index0 + i)));
}

__global__ void round_kernel(Format fm, float* x, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) x[i] = round_to(fm, x[i]);
}

__global__ void accumulate_kernel(float* dst, const float* src, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] += src[i];
}

template <class S>
__global__ void residual_kernel(Format fm, S* out, const S* a, const S* b, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) st(out, i, ld(a, i, fm) + ld(b, i, fm), fm);
}

template <class S>
__global__ void gelu_forward_kernel(Format fm, S* out, const S* inp, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) st(out, i, gelu(ld(inp, i, fm)), fm);
}
template <class S>
__global__ void gelu_backward_kernel(Format fm, S* dinp, const S* inp, const S* dout, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    st(dinp, i, ld(dinp, i, fm) + gelu_grad(ld(inp, i, fm)) * ld(dout, i, fm), fm);
}

template <class S>
__global__ void swiglu_forward_kernel(Format fm, S* out, const S* gate, const S* up, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    st(out, i, silu(ld(gate, i, fm)) * ld(up, i, fm), fm);
}
template <class S>
__global__ void swiglu_backward_kernel(Format fm, S* dgate, S* dup, const S* dout, const S* gate, const S* up,
                                       int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const SwigluGrad g = swiglu_grad(ld(dout, i, fm), ld(gate, i, fm), ld(up, i, fm));
    st(dgate, i, ld(dgate, i, fm) + g.dgate, fm);
    st(dup, i, ld(dup, i, fm) + g.dup, fm);
  }
}

// One thread per rotated pair (b, t, h, i < HS/2).
template <class S>
__global__ void rope_kernel(Format fm, S* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS,
                            float sign) {
  const int64_t half = HS / 2, n = B * T * H * half;
  for (int64_t e = global_thread(); e < n; e += grid_threads()) {
    const int64_t i = e % half, row = e / half, t = (row / H) % T;
    const float c = cos_sin[(t * half + i) * 2], s = sign * cos_sin[(t * half + i) * 2 + 1];
    S* r = x + row * HS;
    const float x1 = ld(r, i, fm), x2 = ld(r, i + half, fm);
    st(r, i, x1 * c - x2 * s, fm);
    st(r, i + half, x2 * c + x1 * s, fm);
  }
}

__global__ void adamw_kernel(AdamWConsts c, float* p, const float* g, float* m, float* v, int64_t n, Format fto,
                             uint16_t* copy) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_element(c, pi, g[i], mi, vi);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if (copy) copy[i] = to_bits(fto, pi);
  }
}

__global__ void adamw_fp16_kernel(AdamWConsts c, SmallFormat h, float* p, const float* g, float* m, float* v,
                                  int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_fp16_storage_element(c, h, pi, g[i], mi, vi);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

Format fmt(DType dt) { return format_of(dt); }

}  // namespace

void convert(cudaStream_t s, DType to, void* dst, DType from, const void* src, int64_t n) {
  if (n == 0) return;
  if (to == from) {
    cudaMemcpyAsync(dst, src, size_t(n) * dtype_size(to), cudaMemcpyDeviceToDevice, s);
    return;
  }
  const Launch L = grid_stride(n);
  MESHLM_LAUNCH(convert_kernel, L, s)(to, fmt(to), dst, from, fmt(from), src, n);
}
void convert_stochastic(cudaStream_t s, DType to, uint16_t* dst, const float* src, int64_t n, uint64_t base,
                        int64_t index0) {
  if (n == 0) return;
  MESHLM_LAUNCH(convert_stochastic_kernel, grid_stride(n), s)(fmt(to), dst, src, n, base, index0);
}
void round_to_format(cudaStream_t s, DType format, float* x, int64_t n) {
  if (n == 0 || format == DType::fp32) return;
  MESHLM_LAUNCH(round_kernel, grid_stride(n), s)(fmt(format), x, n);
}
void accumulate(cudaStream_t s, float* dst, const float* src, int64_t n) {
  if (n == 0) return;
  MESHLM_LAUNCH(accumulate_kernel, grid_stride(n), s)(dst, src, n);
}
void residual_forward(cudaStream_t s, DType dt, void* out, const void* a, const void* b, int64_t n) {
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(residual_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)out, (const S*)a, (const S*)b, n);
  });
}
void gelu_forward(cudaStream_t s, DType dt, void* out, const void* inp, int64_t n) {
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(gelu_forward_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)out, (const S*)inp, n);
  });
}
void gelu_backward(cudaStream_t s, DType dt, void* dinp, const void* inp, const void* dout, int64_t n) {
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(gelu_backward_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)dinp, (const S*)inp, (const S*)dout, n);
  });
}
void swiglu_forward(cudaStream_t s, DType dt, void* out, const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(swiglu_forward_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)out, (const S*)gate, (const S*)up, n);
  });
}
void swiglu_backward(cudaStream_t s, DType dt, void* dgate, void* dup, const void* dout, const void* gate,
                     const void* up, int64_t n) {
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(swiglu_backward_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)dgate, (S*)dup, (const S*)dout,
                                                                  (const S*)gate, (const S*)up, n);
  });
}
void rope(cudaStream_t s, DType dt, void* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS,
          float sign) {
  const int64_t n = B * T * H * (HS / 2);
  if (n == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(rope_kernel<S>, grid_stride(n), s)(fmt(dt), (S*)x, cos_sin, B, T, H, HS, sign);
  });
}
void adamw(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n, const AdamWConsts& c, DType to,
           void* copy) {
  if (n == 0) return;
  MESHLM_LAUNCH(adamw_kernel, grid_stride(n), s)(c, p, g, m, v, n, fmt(copy ? to : DType::bf16),
                                                 static_cast<uint16_t*>(copy));
}
void adamw_fp16_storage(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n,
                        const AdamWConsts& c) {
  if (n == 0) return;
  MESHLM_LAUNCH(adamw_fp16_kernel, grid_stride(n), s)(c, small_format(DType::fp16), p, g, m, v, n);
}

}  // namespace meshlm::cuda::k
