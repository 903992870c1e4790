// Causal attention on tensor cores (wmma 16 x 16 x 16, 16-bit operands, fp32 accumulation), flash
// style: no T x T matrix leaves shared memory. A block of kTcWarps warps takes kTcRows rows, 16
// per warp, and walks the other side's tiles of kTcRows (launch.h: tiles, shared memory).
//   forward  per query tile: S = Q K^T, the online softmax (running max m and sum l per row,
//            the output rescaled by exp(m_old - m_new)), O += P V with P rounded to the operand
//            dtype; out = O / l, lse = m + log l.
//   dq       per query tile: S and dP = dO V^T, P from the lse, dS = P (dP - D) scale, dQ += dS K.
//   dk, dv   per key tile, over the group's query heads and the query tiles at or after it:
//            S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q.
// Every gradient row has one writer and every sum a fixed order: deterministic. The row-wise
// arithmetic is device_math.h's (tested on the CPU); D = rowsum(dO * O) is attention.cu's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace meshlm::cuda::k {
namespace {

using namespace nvcuda;

// The wmma element type of a 16-bit format.
template <class E>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major>;
template <class E, class Layout>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, E, Layout>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// C (16 x n, fp32, ld ldc) += A (16 x k, row-major, lda) B, where B (k x n) is row-major with ldb
// (Layout row_major) or the transpose of an (n x k) row-major matrix with ldb (col_major). One
// warp; n and k multiples of 16. `zero`: C = A B.
template <class E, class Layout>
__device__ void warp_mma(float* C, int ldc, const uint16_t* A, int lda, const uint16_t* B, int ldb, int n, int k,
                         bool zero) {
  const bool col = std::is_same_v<Layout, wmma::col_major>;
  for (int j = 0; j < n; j += 16) {
    FragC c;
    if (zero) wmma::fill_fragment(c, 0.0f);
    else wmma::load_matrix_sync(c, C + j, unsigned(ldc), wmma::mem_row_major);
    for (int l = 0; l < k; l += 16) {
      FragA<E> a;
      FragB<E, Layout> b;
      wmma::load_matrix_sync(a, reinterpret_cast<const E*>(A + l), unsigned(lda));
      wmma::load_matrix_sync(b, reinterpret_cast<const E*>(col ? B + size_t(j) * ldb + l : B + size_t(l) * ldb + j),
                             unsigned(ldb));
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + j, c, unsigned(ldc), wmma::mem_row_major);
  }
}

// dst (kTcRows x HS) = rows [r0, r0 + kTcRows) of a head (row stride ld), zeros past T: 16 bytes
// a thread where the rows allow (every row start 16-byte aligned: the usual case), else 2.
__device__ void load_tile(uint16_t* dst, const uint16_t* src, int64_t ld, int64_t r0, int64_t T, int HS) {
  if (ld % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {  // HS is a multiple of 16
    const int per_row = HS / 8;
    for (int i = int(threadIdx.x); i < kTcRows * per_row; i += int(blockDim.x)) {
      const int r = i / per_row, c = (i % per_row) * 8;
      const uint4 z{0, 0, 0, 0};
      *reinterpret_cast<uint4*>(dst + r * HS + c) =
          r0 + r < T ? *reinterpret_cast<const uint4*>(src + (r0 + r) * ld + c) : z;
    }
    return;
  }
  for (int i = int(threadIdx.x); i < kTcRows * HS; i += int(blockDim.x)) {
    const int r = i / HS, c = i % HS;
    dst[i] = r0 + r < T ? src[(r0 + r) * ld + c] : uint16_t(0);
  }
}
// dst (kTcRows) = v[r0 ...], `pad` past T.
__device__ void load_rows(float* dst, const float* v, int64_t r0, int64_t T, float pad) {
  for (int i = int(threadIdx.x); i < kTcRows; i += int(blockDim.x)) dst[i] = r0 + i < T ? v[r0 + i] : pad;
}

template <class T>
__device__ T* region(unsigned char* sm, size_t off) {
  return reinterpret_cast<T*>(sm + off);
}

template <class E>
__global__ void __launch_bounds__(kTcWarps * kWarp)
    tc_forward_kernel(Format fm, uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                      AttentionShape a, float scale, TcSmem L) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int HS = int(a.HS), w = int(threadIdx.x) / kWarp, lane = int(threadIdx.x) % kWarp;
  const TcTile x = tc_query_block(blockIdx.x, a);
  const int64_t t0 = x.tile * kTcRows, g = x.head / (a.NH / a.NKV);
  uint16_t *Qs = region<uint16_t>(sm, L.q), *Ks = region<uint16_t>(sm, L.k), *Vs = region<uint16_t>(sm, L.v);
  float* S = region<float>(sm, L.s) + w * kTcWarpRows * kTcRows;       // (16, kTcRows)
  uint16_t* P = region<uint16_t>(sm, L.p) + w * kTcWarpRows * kTcRows;  // (16, kTcRows)
  float* O = region<float>(sm, L.acc) + w * kTcWarpRows * HS;           // (16, HS)
  load_tile(Qs, q + x.b * a.T * a.ldq + x.head * HS, a.ldq, t0, a.T, HS);
  for (int i = lane; i < kTcWarpRows * HS; i += kWarp) O[i] = 0.0f;
  const TcLane me = tc_lane(lane);
  const int64_t tq = t0 + w * kTcWarpRows + me.row;  // this lane's query position
  float m = -INFINITY, l = 0.0f;                     // its row's, the same in both lanes of the pair
  const int64_t kv0 = x.b * a.T * a.ldkv + g * HS;
  for (int64_t j = 0; j <= x.tile; j++) {
    __syncthreads();  // the previous tile's products are done with Ks and Vs
    load_tile(Ks, k + kv0, a.ldkv, j * kTcRows, a.T, HS);
    load_tile(Vs, v + kv0, a.ldkv, j * kTcRows, a.T, HS);
    __syncthreads();
    warp_mma<E, wmma::col_major>(S, kTcRows, Qs + w * kTcWarpRows * HS, HS, Ks, HS, kTcRows, HS, true);
    __syncwarp();
    float* srow = S + me.row * kTcRows + me.col0;
    float mx = -INFINITY;
    for (int c = 0; c < kTcLaneCols; c++) {
      const bool masked = j * kTcRows + me.col0 + c > tq;
      srow[c] = masked ? -INFINITY : srow[c] * scale;
      mx = fmaxf(mx, srow[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const TcSoftmaxStep st = tc_softmax_step(m, mx);
    float sum = 0.0f;
    uint16_t* prow = P + me.row * kTcRows + me.col0;
    for (int c = 0; c < kTcLaneCols; c++) {
      const float p = expf(srow[c] - st.m_new);
      sum += p;
      prow[c] = to_bits(fm, p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * st.corr + sum;
    m = st.m_new;
    float* orow = O + me.row * HS + (lane % 2) * (HS / 2);
    for (int c = 0; c < HS / 2; c++) orow[c] *= st.corr;
    __syncwarp();
    warp_mma<E, wmma::row_major>(O, HS, P, kTcRows, Vs, HS, HS, kTcRows, false);
    __syncwarp();
  }
  if (tq >= a.T) return;
  const float* orow = O + me.row * HS + (lane % 2) * (HS / 2);
  uint16_t* o = out + (x.b * a.T + tq) * (a.NH * HS) + x.head * HS + (lane % 2) * (HS / 2);
  for (int c = 0; c < HS / 2; c++) o[c] = to_bits(fm, orow[c] / l);
  if (lane % 2 == 0) lse[(x.b * a.NH + x.head) * a.T + tq] = m + logf(l);
}

// Adds acc (16 x HS fp32, the warp's rows) into rows [r0 + 16 w, ...) of a head (stride ld),
// rounding once; rows past T are not written.
__device__ void add_rows(const Format& fm, uint16_t* dst, int64_t ld, const float* acc, int64_t r0, int64_t T, int HS,
                         int lane) {
  const TcLane me = tc_lane(lane);
  const int64_t r = r0 + me.row;
  if (r >= T) return;
  const int c0 = (lane % 2) * (HS / 2);
  for (int c = c0; c < c0 + HS / 2; c++) dst[r * ld + c] = to_bits(fm, from_bits(fm, dst[r * ld + c]) + acc[me.row * HS + c]);
}

template <class E>
__global__ void __launch_bounds__(kTcWarps * kWarp)
    tc_dq_kernel(Format fm, uint16_t* dq, const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                 const uint16_t* v, const float* lse, const float* D, AttentionShape a, float scale, TcSmem L) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int HS = int(a.HS), w = int(threadIdx.x) / kWarp, lane = int(threadIdx.x) % kWarp;
  const TcTile x = tc_query_block(blockIdx.x, a);
  const int64_t t0 = x.tile * kTcRows, g = x.head / (a.NH / a.NKV), C = a.NH * HS, row0 = (x.b * a.NH + x.head) * a.T;
  uint16_t *Qs = region<uint16_t>(sm, L.q), *Gs = region<uint16_t>(sm, L.dout);
  uint16_t *Ks = region<uint16_t>(sm, L.k), *Vs = region<uint16_t>(sm, L.v);
  float *lse_s = region<float>(sm, L.lse), *D_s = region<float>(sm, L.delta);
  float* S = region<float>(sm, L.s) + w * kTcWarpRows * kTcRows;
  float* dP = region<float>(sm, L.dp) + w * kTcWarpRows * kTcRows;
  uint16_t* dS = region<uint16_t>(sm, L.ds) + w * kTcWarpRows * kTcRows;
  float* acc = region<float>(sm, L.acc) + w * kTcWarpRows * HS;
  load_tile(Qs, q + x.b * a.T * a.ldq + x.head * HS, a.ldq, t0, a.T, HS);
  load_tile(Gs, dout + x.b * a.T * C + x.head * HS, C, t0, a.T, HS);
  load_rows(lse_s, lse + row0, t0, a.T, 0.0f);
  load_rows(D_s, D + row0, t0, a.T, 0.0f);
  for (int i = lane; i < kTcWarpRows * HS; i += kWarp) acc[i] = 0.0f;
  const TcLane me = tc_lane(lane);
  const int rr = w * kTcWarpRows + me.row;  // the lane's row in the tile
  const int64_t kv0 = x.b * a.T * a.ldkv + g * HS;
  for (int64_t j = 0; j <= x.tile; j++) {
    __syncthreads();
    load_tile(Ks, k + kv0, a.ldkv, j * kTcRows, a.T, HS);
    load_tile(Vs, v + kv0, a.ldkv, j * kTcRows, a.T, HS);
    __syncthreads();
    warp_mma<E, wmma::col_major>(S, kTcRows, Qs + w * kTcWarpRows * HS, HS, Ks, HS, kTcRows, HS, true);
    warp_mma<E, wmma::col_major>(dP, kTcRows, Gs + w * kTcWarpRows * HS, HS, Vs, HS, kTcRows, HS, true);
    __syncwarp();
    for (int c = me.col0; c < me.col0 + kTcLaneCols; c++) {
      const bool masked = j * kTcRows + c > t0 + rr;
      const float p = tc_probability(S[me.row * kTcRows + c], scale, lse_s[rr], masked);
      dS[me.row * kTcRows + c] = to_bits(fm, tc_score_grad(p, dP[me.row * kTcRows + c], D_s[rr], scale));
    }
    __syncwarp();
    warp_mma<E, wmma::row_major>(acc, HS, dS, kTcRows, Ks, HS, HS, kTcRows, false);
    __syncwarp();
  }
  add_rows(fm, dq + x.b * a.T * a.ldq + x.head * HS, a.ldq, acc, t0 + w * kTcWarpRows, a.T, HS, lane);
}

template <class E>
__global__ void __launch_bounds__(kTcWarps * kWarp)
    tc_dkv_kernel(Format fm, uint16_t* dk, uint16_t* dv, const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                  const uint16_t* v, const float* lse, const float* D, AttentionShape a, float scale, TcSmem L) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int HS = int(a.HS), w = int(threadIdx.x) / kWarp, lane = int(threadIdx.x) % kWarp;
  const TcTile x = tc_key_block(blockIdx.x, a);  // x.head: the kv head
  const int64_t j0 = x.tile * kTcRows, C = a.NH * HS, group = a.NH / a.NKV, nt = tc_tiles(a.T);
  uint16_t *Ks = region<uint16_t>(sm, L.k), *Vs = region<uint16_t>(sm, L.v);
  uint16_t *Qs = region<uint16_t>(sm, L.q), *Gs = region<uint16_t>(sm, L.dout);
  float *lse_s = region<float>(sm, L.lse), *D_s = region<float>(sm, L.delta);
  float* St = region<float>(sm, L.s) + w * kTcWarpRows * kTcRows;     // (16 keys, kTcRows queries)
  float* dPt = region<float>(sm, L.dp) + w * kTcWarpRows * kTcRows;
  uint16_t* Pt = region<uint16_t>(sm, L.p) + w * kTcWarpRows * kTcRows;
  uint16_t* dSt = region<uint16_t>(sm, L.ds) + w * kTcWarpRows * kTcRows;
  float* dK = region<float>(sm, L.acc) + w * kTcWarpRows * HS;
  float* dV = region<float>(sm, L.acc2) + w * kTcWarpRows * HS;
  const int64_t kv0 = x.b * a.T * a.ldkv + x.head * HS;
  load_tile(Ks, k + kv0, a.ldkv, j0, a.T, HS);
  load_tile(Vs, v + kv0, a.ldkv, j0, a.T, HS);
  for (int i = lane; i < kTcWarpRows * HS; i += kWarp) dK[i] = dV[i] = 0.0f;
  const TcLane me = tc_lane(lane);
  const int64_t key = j0 + w * kTcWarpRows + me.row;  // the lane's key position
  for (int64_t h = x.head * group; h < (x.head + 1) * group; h++) {
    const int64_t row0 = (x.b * a.NH + h) * a.T;
    for (int64_t i = x.tile; i < nt; i++) {
      const int64_t t0 = i * kTcRows;
      __syncthreads();
      load_tile(Qs, q + x.b * a.T * a.ldq + h * HS, a.ldq, t0, a.T, HS);
      load_tile(Gs, dout + x.b * a.T * C + h * HS, C, t0, a.T, HS);
      load_rows(lse_s, lse + row0, t0, a.T, 0.0f);
      load_rows(D_s, D + row0, t0, a.T, 0.0f);
      __syncthreads();
      warp_mma<E, wmma::col_major>(St, kTcRows, Ks + w * kTcWarpRows * HS, HS, Qs, HS, kTcRows, HS, true);
      warp_mma<E, wmma::col_major>(dPt, kTcRows, Vs + w * kTcWarpRows * HS, HS, Gs, HS, kTcRows, HS, true);
      __syncwarp();
      for (int c = me.col0; c < me.col0 + kTcLaneCols; c++) {
        const int64_t tq = t0 + c;
        const bool masked = key > tq || tq >= a.T;
        const float p = tc_probability(St[me.row * kTcRows + c], scale, lse_s[c], masked);
        Pt[me.row * kTcRows + c] = to_bits(fm, p);
        dSt[me.row * kTcRows + c] = to_bits(fm, tc_score_grad(p, dPt[me.row * kTcRows + c], D_s[c], scale));
      }
      __syncwarp();
      warp_mma<E, wmma::row_major>(dV, HS, Pt, kTcRows, Gs, HS, HS, kTcRows, false);
      warp_mma<E, wmma::row_major>(dK, HS, dSt, kTcRows, Qs, HS, HS, kTcRows, false);
      __syncwarp();
    }
  }
  add_rows(fm, dk + x.b * a.T * a.ldkv + x.head * HS, a.ldkv, dK, j0 + w * kTcWarpRows, a.T, HS, lane);
  add_rows(fm, dv + x.b * a.T * a.ldkv + x.head * HS, a.ldkv, dV, j0 + w * kTcWarpRows, a.T, HS, lane);
}

// Launches a kernel with `bytes` of dynamic shared memory (opted in beyond the default 48 KiB).
template <class Kernel, class... Args>
void launch_tc(Kernel kernel, int64_t blocks, size_t bytes, cudaStream_t s, Args... args) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  kernel<<<unsigned(blocks), kTcWarps * kWarp, bytes, s>>>(args...);
}

}  // namespace

void attention_tc_forward(cudaStream_t s, DType dt, void* out, float* lse, const void* q, const void* k,
                          const void* v, const AttentionShape& a) {
  MESHLM_CHECK(a.NKV > 0 && a.NH % a.NKV == 0, "cuda backend: attention heads must be a multiple of kv heads");
  const float scale = 1.0f / sqrtf(float(a.HS));
  const TcSmem L = tc_forward_smem(a.HS);
  const int64_t blocks = a.B * a.NH * tc_tiles(a.T);
  if (blocks == 0) return;
  const Format fm = format_of(dt);
  auto* o = static_cast<uint16_t*>(out);
  auto *qq = static_cast<const uint16_t*>(q), *kk = static_cast<const uint16_t*>(k), *vv = static_cast<const uint16_t*>(v);
  if (dt == DType::bf16) launch_tc(tc_forward_kernel<__nv_bfloat16>, blocks, L.bytes, s, fm, o, lse, qq, kk, vv, a, scale, L);
  else launch_tc(tc_forward_kernel<__half>, blocks, L.bytes, s, fm, o, lse, qq, kk, vv, a, scale, L);
}

void attention_tc_backward(cudaStream_t s, DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q,
                           const void* k, const void* v, const float* lse, const float* D, const AttentionShape& a) {
  const float scale = 1.0f / sqrtf(float(a.HS));
  const int64_t qblocks = a.B * a.NH * tc_tiles(a.T), kblocks = a.B * a.NKV * tc_tiles(a.T);
  if (qblocks == 0) return;
  const Format fm = format_of(dt);
  auto *gq = static_cast<uint16_t*>(dq), *gk = static_cast<uint16_t*>(dk), *gv = static_cast<uint16_t*>(dv);
  auto* go = static_cast<const uint16_t*>(dout);
  auto *qq = static_cast<const uint16_t*>(q), *kk = static_cast<const uint16_t*>(k), *vv = static_cast<const uint16_t*>(v);
  const TcSmem Lq = tc_dq_smem(a.HS), Lk = tc_dkv_smem(a.HS);
  if (dt == DType::bf16) {
    launch_tc(tc_dq_kernel<__nv_bfloat16>, qblocks, Lq.bytes, s, fm, gq, go, qq, kk, vv, lse, D, a, scale, Lq);
    launch_tc(tc_dkv_kernel<__nv_bfloat16>, kblocks, Lk.bytes, s, fm, gk, gv, go, qq, kk, vv, lse, D, a, scale, Lk);
  } else {
    launch_tc(tc_dq_kernel<__half>, qblocks, Lq.bytes, s, fm, gq, go, qq, kk, vv, lse, D, a, scale, Lq);
    launch_tc(tc_dkv_kernel<__half>, kblocks, Lk.bytes, s, fm, gk, gv, go, qq, kk, vv, lse, D, a, scale, Lk);
  }
}

}  // namespace meshlm::cuda::k
