// The arithmetic of the CUDA kernels as small host-device functions: each kernel of backend/cuda
// is a loop around these, and the CPU tests (tests/backend/test_cuda_host.cpp) run the same
// functions against the reference backend, so a machine without a GPU checks what every kernel
// computes. The library is compiled with --fmad=false: + - * / sqrt and explicit fmaf round the
// same on host and device, so these functions give the same bits on both sides; only expf, logf
// and tanhf differ (CUDA's are within 2 ulp of the correctly rounded value).
//
// The reductions fix their order: warp_sum is the xor butterfly of __shfl_xor_sync (every lane
// ends with the same value), block_sum each thread's strided partial then the warps' in order;
// the *_sim functions replay that order on the host.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"

#ifdef __CUDACC__
#define MESHLM_HD __host__ __device__ __forceinline__
#else
#define MESHLM_HD inline
#endif

namespace meshlm::cuda {

constexpr int kWarp = 32;

MESHLM_HD uint32_t f2u(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
MESHLM_HD float u2f(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
MESHLM_HD bool is_finite(float x) { return (f2u(x) & 0x7f800000u) != 0x7f800000u; }
MESHLM_HD float abs_f(float x) { return u2f(f2u(x) & 0x7fffffffu); }

// ---- 16-bit and 8-bit formats (core/dtype.h defines them; the tests compare bit for bit) ----
MESHLM_HD float bf16_to_f32(uint16_t b) { return u2f(uint32_t(b) << 16); }
MESHLM_HD uint16_t f32_to_bf16(float x) {
  uint32_t u = f2u(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
MESHLM_HD uint16_t f32_to_bf16_stochastic(float x, uint32_t random) {
  const uint32_t u = f2u(x);
  if ((u & 0x7fffffffu) >= 0x7f800000u) return f32_to_bf16(x);
  return uint16_t((u + (random >> 16)) >> 16);
}

// A small format (fp16, e4m3, e5m2) as the constants its rounding needs.
struct SmallFormat {
  int exp_bits, man_bits, bias;
  bool has_inf;
  float max_finite;
};
inline SmallFormat small_format(DType dt) {
  const FloatFormat f = float_format(dt);
  return {f.exp_bits, f.man_bits, f.bias, f.has_inf, float(f.max_finite)};
}

// Bits of format f nearest to x (random < 0: ties to even; else stochastic with random in
// [0, 1)): dtype.cpp's to_bits, in the same exact double arithmetic.
MESHLM_HD uint16_t small_from_f32(const SmallFormat& f, float x, double random) {
  const uint16_t sign_bit = uint16_t(1u << (f.exp_bits + f.man_bits));
  const uint16_t man_mask = uint16_t((1u << f.man_bits) - 1);
  const uint16_t exp_mask = uint16_t(((1u << f.exp_bits) - 1) << f.man_bits);
  const uint16_t nan_bits = f.has_inf ? uint16_t(exp_mask | (1u << (f.man_bits - 1))) : uint16_t(exp_mask | man_mask);
  const uint16_t inf_or_max = f.has_inf ? exp_mask : uint16_t(nan_bits - 1);
  const uint32_t u = f2u(x);
  const uint16_t sign = (u & 0x80000000u) ? sign_bit : 0;
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t(sign | nan_bits);
  if ((u & 0x7fffffffu) == 0x7f800000u) return uint16_t(sign | inf_or_max);
  const double a = double(abs_f(x));
  if (a == 0) return sign;
  int e2;
  frexp(a, &e2);
  const int emin = 1 - f.bias;
  const int unbiased = e2 - 1 > emin ? e2 - 1 : emin;
  const double quantum = ldexp(1.0, unbiased - f.man_bits);
  const double t = a / quantum;
  double n;
  if (random < 0) {
    n = nearbyint(t);
  } else {
    const double fl = floor(t);
    n = random < t - fl ? fl + 1 : fl;
  }
  const double r = n * quantum;
  if (r > double(f.max_finite)) return uint16_t(sign | inf_or_max);
  if (r == 0) return sign;
  frexp(r, &e2);
  const int ur = e2 - 1;
  if (ur < emin) return uint16_t(sign | uint16_t(ldexp(r, f.man_bits - emin)));
  const double man = ldexp(r, f.man_bits - ur) - ldexp(1.0, f.man_bits);
  return uint16_t(sign | (uint32_t(ur + f.bias) << f.man_bits) | uint32_t(man));
}
MESHLM_HD float small_to_f32(const SmallFormat& f, uint16_t bits) {
  const uint16_t sign_bit = uint16_t(1u << (f.exp_bits + f.man_bits));
  const uint16_t man_mask = uint16_t((1u << f.man_bits) - 1);
  const uint16_t exp_mask = uint16_t(((1u << f.exp_bits) - 1) << f.man_bits);
  const uint32_t exp = uint32_t(bits & exp_mask) >> f.man_bits, man = bits & man_mask;
  const uint32_t exp_all = (1u << f.exp_bits) - 1;
  double v;
  if (f.has_inf && exp == exp_all) v = man ? double(u2f(0x7fc00000u)) : double(u2f(0x7f800000u));
  else if (!f.has_inf && (bits & ~sign_bit) == (exp_mask | man_mask)) v = double(u2f(0x7fc00000u));
  else if (exp == 0) v = ldexp(double(man), 1 - f.bias - f.man_bits);
  else v = ldexp(double(man + (1u << f.man_bits)), int(exp) - f.bias - f.man_bits);
  return float((bits & sign_bit) ? -v : v);
}

// The format of a DType as kernels see it: bf16 by the bit trick, others by the table.
struct Format {
  DType dt;
  SmallFormat f;
};
inline Format format_of(DType dt) {
  return {dt, dt == DType::fp32 || dt == DType::fp64 || dt == DType::bf16 ? SmallFormat{8, 7, 127, true, 3.3895314e38f}
                                                                             : small_format(dt)};
}
MESHLM_HD uint16_t to_bits(const Format& fm, float x) {
  return fm.dt == DType::bf16 ? f32_to_bf16(x) : small_from_f32(fm.f, x, -1.0);
}
MESHLM_HD float from_bits(const Format& fm, uint16_t b) {
  return fm.dt == DType::bf16 ? bf16_to_f32(b) : small_to_f32(fm.f, b);
}
MESHLM_HD uint16_t to_bits_stochastic(const Format& fm, float x, uint32_t random) {
  return fm.dt == DType::bf16 ? f32_to_bf16_stochastic(x, random) : small_from_f32(fm.f, x, double(random) * 0x1p-32);
}
MESHLM_HD float round_to(const Format& fm, float x) { return from_bits(fm, to_bits(fm, x)); }

// The fp8 code of v * scale (reference::fp8_code): clamped to the largest finite (satfinite),
// RNE; a non-finite v is NaN in e4m3 (no inf there) and itself in e5m2.
MESHLM_HD uint8_t fp8_code(const SmallFormat& f, float v, float scale) {
  if (!is_finite(v) && !f.has_inf) return uint8_t((f2u(v) & 0x80000000u) ? 0xff : 0x7f);
  const float r = is_finite(v) ? fminf(fmaxf(v * scale, -f.max_finite), f.max_finite) : v;
  return uint8_t(small_from_f32(f, r, -1.0));
}

// The 32 x 32 tiles of a transposing kernel (launch.h tiles()): in tile `tile` of a matrix
// tiles_c tiles wide, thread t of kTileThreads takes column t % 32 of the tile's rows t / 32 +
// 8 k, k = 0..3. Reading x (rows, cols) and writing its transpose use the same map, the second
// over the transposed tiling, so both the loads and the stores of a warp are one row.
constexpr int kTile = 32, kTileThreads = 256, kTileRowsPerPass = kTileThreads / kTile;
struct TileCoord {
  int64_t row, col;
};
MESHLM_HD TileCoord tile_element(int64_t tile, int64_t tiles_c, int t, int k) {
  return {(tile / tiles_c) * kTile + t / kTile + kTileRowsPerPass * k, (tile % tiles_c) * kTile + t % kTile};
}
// The index of tile `tile` of a matrix tiles_c tiles wide in the tiling of its transpose (tiles_r
// tiles wide): tile (tr, tc) becomes (tc, tr). Thread t then writes element (t / 32 + 8 k, t % 32)
// of the transposed tile, which is element (t % 32, t / 32 + 8 k) of the one it read.
MESHLM_HD int64_t transposed_tile(int64_t tile, int64_t tiles_r, int64_t tiles_c) {
  return (tile % tiles_c) * tiles_r + tile / tiles_c;
}

// ---- tensor-core attention (attention_tc.cu) ----
// A block of kTcWarps warps takes a tile of kTcRows query rows (forward, dq) or key rows (dk,
// dv), 16 per warp; the other side comes in tiles of kTcRows too. After a warp's 16 x kTcRows
// block of scores is in shared memory, lane l owns row l / 2 of it and the half l % 2 of its
// columns (and of the head's channels, to rescale the output row).
constexpr int kTcWarps = 4, kTcRows = 64, kTcWarpRows = 16, kTcLaneCols = kTcRows / 2;
struct TcLane {
  int row, col0;  // the row in the warp's 16, the first of its kTcLaneCols columns
};
MESHLM_HD TcLane tc_lane(int lane) { return {lane / 2, (lane % 2) * kTcLaneCols}; }

// The blocks: forward and dq one per (b, h, query tile), the longest rows first; dk/dv one per
// (b, kv head, key tile), the key tiles with the most query tiles after them first.
struct TcTile {
  int64_t b, head, tile;
};
MESHLM_HD int64_t tc_tiles(int64_t T) { return (T + kTcRows - 1) / kTcRows; }
MESHLM_HD TcTile tc_query_block(int64_t block, const AttentionShape& a) {
  const int64_t n = tc_tiles(a.T), bh = block / n;
  return {bh / a.NH, bh % a.NH, n - 1 - block % n};
}
MESHLM_HD TcTile tc_key_block(int64_t block, const AttentionShape& a) {
  const int64_t n = tc_tiles(a.T), bg = block / n;
  return {bg / a.NKV, bg % a.NKV, block % n};
}

// One lane's step of the online softmax over its half of a row of scaled scores s (masked
// entries -inf), given the row's max over both halves: p = exp(s - m_new) for its columns, the
// factor corr = exp(m - m_new) that rescales the row's earlier sum and output. The caller adds
// both halves' sums of p (before rounding p to the operand dtype, as the scalar kernel sums).
struct TcSoftmaxStep {
  float m_new, corr;
};
MESHLM_HD TcSoftmaxStep tc_softmax_step(float m, float row_max) {
  const float m_new = m > row_max ? m : row_max;
  return {m_new, expf(m - m_new)};
}
// Backward's two element-wise quantities from a recomputed score: the probability from the
// saved log-sum-exp, and the score gradient dS = P (dP - D) scale (0 where masked).
MESHLM_HD float tc_probability(float s, float scale, float lse, bool masked) { return masked ? 0.0f : expf(s * scale - lse); }
MESHLM_HD float tc_score_grad(float p, float dp, float D, float scale) { return p * (dp - D) * scale; }

// core/rng.h's random_bits (the stream's bits for element `index`).
MESHLM_HD uint32_t random_bits(uint64_t base, uint64_t index) {
  uint64_t x = (base ^ index) + 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return uint32_t((x ^ (x >> 31)) >> 32);
}

// ---- element-wise ----
MESHLM_HD float gelu(float x) {
  const float s = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + tanhf(s * (x + 0.044715f * x * x * x)));
}
MESHLM_HD float gelu_grad(float x) {
  const float s = 0.7978845608028654f;
  const float u = s * (x + 0.044715f * x * x * x);
  const float th = tanhf(u);
  const float du = s * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}
MESHLM_HD float silu(float g) { return g / (1.0f + expf(-g)); }
// The two gradients of out = silu(gate) * up, as the reference writes them.
struct SwigluGrad {
  float dgate, dup;
};
MESHLM_HD SwigluGrad swiglu_grad(float dout, float gate, float up) {
  const float s = 1.0f / (1.0f + expf(-gate));
  return {dout * up * s * (1.0f + gate * (1.0f - s)), dout * gate * s};
}

// AdamW on one element, the reference's expression; c1, c2 = 1 - beta^step computed once.
struct AdamWConsts {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, c1, c2;
};
inline AdamWConsts adamw_consts(const AdamWArgs& a) {
  return {a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.grad_scale, 1.0f - powf(a.beta1, float(a.step)),
          1.0f - powf(a.beta2, float(a.step))};
}
MESHLM_HD void adamw_element(const AdamWConsts& k, float& p, float g, float& m, float& v) {
  const float grad = g * k.grad_scale;
  m = k.beta1 * m + (1.0f - k.beta1) * grad;
  v = k.beta2 * v + (1.0f - k.beta2) * grad * grad;
  const float mhat = m / k.c1, vhat = v / k.c2;
  p -= k.lr * (mhat / (sqrtf(vhat) + k.eps) + k.weight_decay * p);
}
// The pure-fp16 recipe's AdamW on one element (reference::adamw_update_fp16_storage).
MESHLM_HD void adamw_fp16_storage_element(const AdamWConsts& k, const SmallFormat& h, float& p, float g, float& m,
                                          float& v) {
  auto r = [&h](float x) { return small_to_f32(h, small_from_f32(h, x, -1.0)); };
  const float step_size = k.lr / k.c1, c2_sqrt = sqrtf(k.c2), decay = 1.0f - k.lr * k.weight_decay;
  const float grad = r(g * k.grad_scale);
  float pi = r(p * decay);
  const float mi = r(m + (1.0f - k.beta1) * (grad - m));
  float vi = r(v * k.beta2);
  vi = r(vi + (1.0f - k.beta2) * grad * grad);
  float denom = r(sqrtf(vi));
  denom = r(denom / c2_sqrt);
  denom = r(denom + k.eps);
  pi = r(pi - step_size * (mi / denom));
  p = pi;
  m = mi;
  v = vi;
}

// ---- reductions in a fixed order ----
// The running (max, sum of exp(x - max)) of a softmax row, combined in any grouping.
struct SoftmaxAcc {
  float max = -INFINITY, sum = 0.0f;
};
MESHLM_HD SoftmaxAcc softmax_push(SoftmaxAcc a, float x) {
  if (x > a.max) {
    a.sum = a.sum * expf(a.max - x) + 1.0f;
    a.max = x;
  } else {
    a.sum += expf(x - a.max);
  }
  return a;
}
MESHLM_HD SoftmaxAcc softmax_merge(SoftmaxAcc a, SoftmaxAcc b) {
  if (b.max == -INFINITY) return a;
  if (a.max == -INFINITY) return b;
  const float m = a.max > b.max ? a.max : b.max;
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}
MESHLM_HD float softmax_lse(SoftmaxAcc a) { return a.max == -INFINITY ? -INFINITY : a.max + logf(a.sum); }

// Layernorm's rstd from a row's sum of squared deviations (two passes: mean, then deviations).
MESHLM_HD float layernorm_rstd(float sum_sq_dev, int64_t C) { return 1.0f / sqrtf(sum_sq_dev / float(C) + 1e-5f); }

// The order a warp (xor butterfly) and a block (strided partials, then warps) sum in, replayed
// on the host: the device reductions of reduce.cuh follow exactly these steps.
inline float warp_sum_sim(float lanes[kWarp]) {
  for (int off = kWarp / 2; off > 0; off /= 2) {
    float next[kWarp];
    for (int l = 0; l < kWarp; l++) next[l] = lanes[l] + lanes[l ^ off];
    for (int l = 0; l < kWarp; l++) lanes[l] = next[l];
  }
  return lanes[0];
}
// Thread t of nt (a multiple of 32, at most 1024) sums f(t), f(t + nt), ... in order; the block
// sums the partials warp by warp, then the warps' sums in one more warp.
template <class F>
float block_sum_sim(int64_t n, int nt, F f) {
  float warps[kWarp] = {};
  for (int w = 0; w < nt / kWarp; w++) {
    float lanes[kWarp];
    for (int l = 0; l < kWarp; l++) {
      float acc = 0.0f;
      for (int64_t i = w * kWarp + l; i < n; i += nt) acc += f(i);
      lanes[l] = acc;
    }
    warps[w] = warp_sum_sim(lanes);
  }
  return warp_sum_sim(warps);
}

}  // namespace meshlm::cuda
