// Causal attention, flash-style: no T x T matrix is ever stored. Forward: one warp per query row
// keeps a running max, sum and output over chunks of 32 keys (lane j scores key j0 + j), and
// saves the row's log-sum-exp. Backward recomputes the probabilities from the lse: D =
// rowsum(dout * out) first, then one warp per query row for dq and one warp per key row for dk
// and dv (summing its group's query heads), so every gradient row has one writer: deterministic,
// no atomics. Row-major heads as ops.inc lays them out; head size at most kMaxHeadSize.
#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

constexpr int kPer = int(kMaxHeadSize / kWarp);  // channels per lane
constexpr unsigned kFull = 0xffffffffu;

template <class S>
__device__ float dot_row(const Format& fm, const float* xs, const S* row, int64_t HS) {
  float d = 0;
  for (int64_t c = 0; c < HS; c++) d = fmaf(xs[c], ld(row, c, fm), d);
  return d;
}

template <class S>
__device__ void load_row(const Format& fm, float* dst, const S* row, int64_t HS, int lane) {
  for (int64_t c = lane; c < HS; c += kWarp) dst[c] = ld(row, c, fm);
  __syncwarp();
}

// acc (the lane's channels), m, l over keys [0, nkeys) of rows kb, vb (ldkv apart).
template <class S>
__device__ void attend(const Format& fm, const float* qs, const S* kb, const S* vb, int64_t ldkv, int64_t nkeys,
                       int64_t HS, float scale, float* acc, float& m, float& l, int lane) {
  for (int64_t j0 = 0; j0 < nkeys; j0 += kWarp) {
    const int64_t j = j0 + lane;
    const float s = j < nkeys ? dot_row(fm, qs, kb + j * ldkv, HS) * scale : -INFINITY;
    const float mnew = fmaxf(m, warp_max(s));
    const float corr = expf(m - mnew);
    const float p = j < nkeys ? expf(s - mnew) : 0.0f;
    l = l * corr + warp_sum(p);
    const int cnt = nkeys - j0 < kWarp ? int(nkeys - j0) : kWarp;
#pragma unroll
    for (int u = 0; u < kPer; u++) acc[u] *= corr;
    for (int jj = 0; jj < cnt; jj++) {
      const float pj = __shfl_sync(kFull, p, jj);
      const S* vr = vb + (j0 + jj) * ldkv;
#pragma unroll
      for (int u = 0; u < kPer; u++) {
        const int64_t c = lane + kWarp * u;
        if (c < HS) acc[u] = fmaf(pj, ld(vr, c, fm), acc[u]);
      }
    }
    m = mnew;
  }
}

// The (b, h, t) of warp row r = (b NH + h) T + t: also its index in lse and D.
struct RowIndex {
  int64_t b, h, t;
};
__device__ RowIndex row_index(int64_t r, int64_t T, int64_t H) { return {r / (T * H), (r / T) % H, r % T}; }
__device__ int64_t warp_row() { return int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp; }

template <class S>
__global__ void forward_kernel(Format fm, S* out, float* lse, const S* q, const S* k, const S* v, AttentionShape a,
                               float scale) {
  extern __shared__ float sh[];
  const int lane = threadIdx.x % kWarp;
  const int64_t r = warp_row();
  if (r >= a.B * a.NH * a.T) return;
  const RowIndex x = row_index(r, a.T, a.NH);
  const int64_t kvh = x.h / (a.NH / a.NKV), HS = a.HS;
  float* qs = sh + (threadIdx.x / kWarp) * 2 * kMaxHeadSize;
  load_row(fm, qs, q + (x.b * a.T + x.t) * a.ldq + x.h * HS, HS, lane);
  float acc[kPer] = {};
  float m = -INFINITY, l = 0;
  const int64_t kv0 = x.b * a.T * a.ldkv + kvh * HS;
  attend(fm, qs, k + kv0, v + kv0, a.ldkv, x.t + 1, HS, scale, acc, m, l, lane);
  S* o = out + (x.b * a.T + x.t) * (a.NH * HS) + x.h * HS;
#pragma unroll
  for (int u = 0; u < kPer; u++)
    if (lane + kWarp * u < HS) st(o, lane + kWarp * u, acc[u] / l, fm);
  if (lane == 0) lse[r] = m + logf(l);
}

template <class S>
__global__ void decode_kernel(Format fm, S* out, const S* q, const S* k, const S* v, AttentionShape a, int64_t len,
                              float scale) {
  extern __shared__ float sh[];
  const int lane = threadIdx.x % kWarp;
  const int64_t h = warp_row();
  if (h >= a.NH) return;
  const int64_t HS = a.HS, kvh = h / (a.NH / a.NKV);
  float* qs = sh + (threadIdx.x / kWarp) * 2 * kMaxHeadSize;
  load_row(fm, qs, q + h * HS, HS, lane);
  float acc[kPer] = {};
  float m = -INFINITY, l = 0;
  attend(fm, qs, k + kvh * HS, v + kvh * HS, a.ldkv, len, HS, scale, acc, m, l, lane);
#pragma unroll
  for (int u = 0; u < kPer; u++)
    if (lane + kWarp * u < HS) st(out + h * HS, lane + kWarp * u, acc[u] / l, fm);
}

// D[r] = dout . out over row r's head channels.
template <class S>
__global__ void delta_kernel(Format fm, float* D, const S* dout, const S* out, AttentionShape a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = warp_row();
  if (r >= a.B * a.NH * a.T) return;
  const RowIndex x = row_index(r, a.T, a.NH);
  const int64_t off = (x.b * a.T + x.t) * (a.NH * a.HS) + x.h * a.HS;
  float d = 0;
  for (int64_t c = lane; c < a.HS; c += kWarp) d += ld(dout + off, c, fm) * ld(out + off, c, fm);
  d = warp_sum(d);
  if (lane == 0) D[r] = d;
}

template <class S>
__global__ void dq_kernel(Format fm, S* dq, const S* dout, const S* q, const S* k, const S* v, const float* lse,
                          const float* D, AttentionShape a, float scale) {
  extern __shared__ float sh[];
  const int lane = threadIdx.x % kWarp;
  const int64_t r = warp_row();
  if (r >= a.B * a.NH * a.T) return;
  const RowIndex x = row_index(r, a.T, a.NH);
  const int64_t HS = a.HS, kvh = x.h / (a.NH / a.NKV);
  float* qs = sh + (threadIdx.x / kWarp) * 2 * kMaxHeadSize;
  float* gs = qs + kMaxHeadSize;
  load_row(fm, qs, q + (x.b * a.T + x.t) * a.ldq + x.h * HS, HS, lane);
  load_row(fm, gs, dout + (x.b * a.T + x.t) * (a.NH * HS) + x.h * HS, HS, lane);
  const S* kb = k + x.b * a.T * a.ldkv + kvh * HS;
  const S* vb = v + x.b * a.T * a.ldkv + kvh * HS;
  const float l = lse[r], Dr = D[r];
  float acc[kPer] = {};
  for (int64_t j0 = 0; j0 <= x.t; j0 += kWarp) {
    const int64_t j = j0 + lane;
    float ds = 0;
    if (j <= x.t) {
      const float p = expf(dot_row(fm, qs, kb + j * a.ldkv, HS) * scale - l);
      ds = p * (dot_row(fm, gs, vb + j * a.ldkv, HS) - Dr) * scale;
    }
    const int cnt = x.t + 1 - j0 < kWarp ? int(x.t + 1 - j0) : kWarp;
    for (int jj = 0; jj < cnt; jj++) {
      const float dsj = __shfl_sync(kFull, ds, jj);
      const S* kr = kb + (j0 + jj) * a.ldkv;
#pragma unroll
      for (int u = 0; u < kPer; u++)
        if (lane + kWarp * u < HS) acc[u] = fmaf(dsj, ld(kr, lane + kWarp * u, fm), acc[u]);
    }
  }
  S* o = dq + (x.b * a.T + x.t) * a.ldq + x.h * HS;
#pragma unroll
  for (int u = 0; u < kPer; u++) {
    const int64_t c = lane + kWarp * u;
    if (c < HS) st(o, c, ld(o, c, fm) + acc[u], fm);
  }
}

// Warp row r = (b NKV + g) T + j: key row j of kv head g; its group's query heads in order.
template <class S>
__global__ void dkv_kernel(Format fm, S* dk, S* dv, const S* dout, const S* q, const S* k, const S* v,
                           const float* lse, const float* D, AttentionShape a, float scale) {
  extern __shared__ float sh[];
  const int lane = threadIdx.x % kWarp;
  const int64_t r = warp_row();
  if (r >= a.B * a.NKV * a.T) return;
  const RowIndex x = row_index(r, a.T, a.NKV);  // x.h is the kv head, x.t the key position
  const int64_t HS = a.HS, C = a.NH * HS, kv_off = (x.b * a.T + x.t) * a.ldkv + x.h * HS;
  float* ks = sh + (threadIdx.x / kWarp) * 2 * kMaxHeadSize;
  float* vs = ks + kMaxHeadSize;
  load_row(fm, ks, k + kv_off, HS, lane);
  load_row(fm, vs, v + kv_off, HS, lane);
  float dka[kPer] = {}, dva[kPer] = {};
  for (int64_t h = x.h * (a.NH / a.NKV); h < (x.h + 1) * (a.NH / a.NKV); h++) {
    const int64_t row0 = (x.b * a.NH + h) * a.T;  // lse / D index of (b, h, 0)
    for (int64_t t0 = x.t; t0 < a.T; t0 += kWarp) {
      const int64_t t = t0 + lane;
      float p = 0, ds = 0;
      if (t < a.T) {
        const S* qt = q + (x.b * a.T + t) * a.ldq + h * HS;
        const S* gt = dout + (x.b * a.T + t) * C + h * HS;
        float s = 0, dp = 0;
        for (int64_t c = 0; c < HS; c++) {
          s = fmaf(ld(qt, c, fm), ks[c], s);
          dp = fmaf(ld(gt, c, fm), vs[c], dp);
        }
        p = expf(s * scale - lse[row0 + t]);
        ds = p * (dp - D[row0 + t]) * scale;
      }
      const int cnt = a.T - t0 < kWarp ? int(a.T - t0) : kWarp;
      for (int tt = 0; tt < cnt; tt++) {
        const float pj = __shfl_sync(kFull, p, tt), dsj = __shfl_sync(kFull, ds, tt);
        const S* qt = q + (x.b * a.T + t0 + tt) * a.ldq + h * HS;
        const S* gt = dout + (x.b * a.T + t0 + tt) * C + h * HS;
#pragma unroll
        for (int u = 0; u < kPer; u++) {
          const int64_t c = lane + kWarp * u;
          if (c < HS) {
            dka[u] = fmaf(dsj, ld(qt, c, fm), dka[u]);
            dva[u] = fmaf(pj, ld(gt, c, fm), dva[u]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int u = 0; u < kPer; u++) {
    const int64_t c = lane + kWarp * u;
    if (c < HS) {
      st(dk + kv_off, c, ld(dk + kv_off, c, fm) + dka[u], fm);
      st(dv + kv_off, c, ld(dv + kv_off, c, fm) + dva[u], fm);
    }
  }
}

float check_shape(const AttentionShape& a) {
  MESHLM_CHECK(a.HS > 0 && a.HS <= kMaxHeadSize,
               "cuda backend: attention head size " + std::to_string(a.HS) + " (at most 256)");
  MESHLM_CHECK(a.NKV > 0 && a.NH % a.NKV == 0, "cuda backend: attention heads must be a multiple of kv heads");
  return 1.0f / sqrtf(float(a.HS));
}

}  // namespace

void attention_forward(cudaStream_t s, DType dt, void* out, float* lse, const void* q, const void* k, const void* v,
                       const AttentionShape& a) {
  const float scale = check_shape(a);
  const int64_t rows = a.B * a.NH * a.T;
  if (rows == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(forward_kernel<S>, attention_rows(rows), s)(format_of(dt), (S*)out, lse, (const S*)q, (const S*)k,
                                                              (const S*)v, a, scale);
  });
}

void attention_decode(cudaStream_t s, DType dt, void* out, const void* q, const void* k, const void* v,
                      const AttentionShape& a, int64_t len) {
  const float scale = check_shape(a);
  if (len == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(decode_kernel<S>, attention_rows(a.NH), s)(format_of(dt), (S*)out, (const S*)q, (const S*)k,
                                                             (const S*)v, a, len, scale);
  });
}

void attention_delta(cudaStream_t s, DType dt, float* D, const void* dout, const void* out, const AttentionShape& a) {
  const int64_t rows = a.B * a.NH * a.T;
  if (rows == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    MESHLM_LAUNCH(delta_kernel<S>, warp_rows(rows), s)(format_of(dt), D, (const S*)dout, (const S*)out, a);
  });
}

void attention_backward(cudaStream_t s, DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q,
                        const void* k, const void* v, const void* out, const float* lse, const AttentionShape& a,
                        float* scratch) {
  const float scale = check_shape(a);
  const int64_t rows = a.B * a.NH * a.T;
  if (rows == 0) return;
  with_storage(dt, [&](auto t) {
    using S = decltype(t);
    const Format fm = format_of(dt);
    attention_delta(s, dt, scratch, dout, out, a);
    MESHLM_LAUNCH(dq_kernel<S>, attention_rows(rows), s)(fm, (S*)dq, (const S*)dout, (const S*)q, (const S*)k,
                                                         (const S*)v, lse, scratch, a, scale);
    MESHLM_LAUNCH(dkv_kernel<S>, attention_rows(a.B * a.NKV * a.T), s)(fm, (S*)dk, (S*)dv, (const S*)dout,
                                                                       (const S*)q, (const S*)k, (const S*)v, lse,
                                                                       scratch, a, scale);
  });
}

}  // namespace meshlm::cuda::k
