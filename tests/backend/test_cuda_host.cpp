// The CUDA backend's host side, on any machine: the arithmetic its kernels run (the host-device
// functions of backend/cuda/device_math.h) against core's formats and the reference kernels,
// the cuBLASLt plans executed column-major against the reference's row-major gemm, algorithm-
// cache keys, launch shapes, the caching pool, device choice and NCCL's padded blocks, and the
// loader's one-line errors. The kernels themselves run on a GPU (tests/backend/cuda_check.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/abi.h"
#include "backend/cuda/bootstrap.h"
#include "backend/cuda/caching_allocator.h"
#include "backend/cuda/device_math.h"
#include "backend/cuda/gemm_plan.h"
#include "backend/cuda/launch.h"
#include "backend/cuda/quantize_math.h"
#include "backend/reference/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/formats.h"
#include "core/rng.h"
#include "support/support.h"

namespace meshlm::cuda {
namespace {

std::vector<float> probe_floats() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 448.0f, 464.0f, 57344.0f, 61440.0f,
                          1e-8f, 6e-8f, 3e-8f, 1e-45f, INFINITY, -INFINITY, NAN, 3.4e38f};
  for (uint64_t i = 0; i < 200000; i++) {
    const uint32_t bits = random_u32(7, 1, i);
    float x = u2f(bits);
    if (i % 2) x = float((uniform01(7, 2, i) - 0.5) * std::ldexp(1.0, int(i % 40) - 24));
    v.push_back(x);
  }
  return v;
}

bool same_bits_or_nan(float a, float b) { return (std::isnan(a) && std::isnan(b)) || f2u(a) == f2u(b); }

TEST(CudaDeviceMath, FormatsMatchCoreBitForBit) {
  const std::vector<float> xs = probe_floats();
  for (DType dt : {DType::bf16, DType::fp16, DType::fp8_e4m3, DType::fp8_e5m2}) {
    const Format fm = format_of(dt);
    int bad = 0;
    for (float x : xs)  // NaN payloads may differ (bf16 keeps them, as core's fast path does)
      bad += std::isnan(x) ? !std::isnan(from_bits(fm, to_bits(fm, x))) : to_bits(fm, x) != reference_float_to_bits(dt, x);
    const uint32_t codes = dtype_size(dt) == 2 ? 65536u : 256u;
    for (uint32_t c = 0; c < codes; c++) bad += !same_bits_or_nan(from_bits(fm, uint16_t(c)), bits_to_float(dt, uint16_t(c)));
    for (uint64_t i = 0; i < 20000; i++) {
      const float x = xs[size_t(i % xs.size())];
      const uint32_t r = random_u32(3, 4, i);
      if (dt == DType::bf16 || dt == DType::fp16) bad += to_bits_stochastic(fm, x, r) != float_to_bits_stochastic(dt, x, r);
    }
    EXPECT_EQ(bad, 0) << dtype_name(dt);
  }
}

// quantize_fp8's code of each value (device_math.h fp8_code) is the reference's, bit for bit,
// non-finite values included.
TEST(CudaDeviceMath, Fp8CodesAreTheReferences) {
  const std::vector<float> xs = probe_floats();
  for (DType f : {DType::fp8_e4m3, DType::fp8_e5m2})
    for (float scale : {1.0f, 0x1p-5f, 0x1p7f}) {
      const SmallFormat sf = small_format(f);
      int bad = 0;
      for (float x : xs) bad += fp8_code(sf, x, scale) != reference::fp8_code(f, x, scale);
      EXPECT_EQ(bad, 0) << dtype_name(f) << " scale " << scale;
    }
}

TEST(CudaDeviceMath, RandomBitsAreCoresStream) {
  const uint64_t base = random_base(11, 5);
  for (uint64_t i = 0; i < 1000; i++) ASSERT_EQ(random_bits(base, i * 977), random_u32(11, 5, i * 977));
}

TEST(CudaDeviceMath, ElementwiseAgainstDoubleReference) {
  const std::vector<double> xs = test::random_f32_values(5000, 3, -8.0, 8.0);
  for (double x : xs) {
    const float f = float(x);
    const double tol = 64 * test::kF32Eps;  // a few fp32 roundings of O(1) factors, tanh/exp within 2 ulp
    ASSERT_NEAR(gelu(f), reference::gelu_value(x), tol * (std::fabs(x) + 1)) << x;
    ASSERT_NEAR(gelu_grad(f), reference::gelu_derivative(x), tol * (x * x + 1)) << x;
    ASSERT_NEAR(silu(f), reference::silu_value(x), tol * (std::fabs(x) + 1)) << x;
  }
}

TEST(CudaDeviceMath, AdamWIsTheReferenceBitForBit) {
  const int64_t n = 4096;
  std::vector<float> p = test::to_float(test::random_f32_values(n, 1)), g = test::to_float(test::random_f32_values(n, 2));
  std::vector<float> m = test::to_float(test::random_f32_values(n, 3, -0.1, 0.1));
  std::vector<float> v = test::to_float(test::random_f32_values(n, 4, 0.0, 0.01));
  AdamWArgs a;
  a.lr = 1e-3f, a.weight_decay = 0.1f, a.grad_scale = 0.5f, a.step = 7;
  std::vector<float> rp = p, rm = m, rv = v, hp = p, hm = m, hv = v;
  reference::adamw_update(rp.data(), g.data(), rm.data(), rv.data(), n, a);
  const AdamWConsts k = adamw_consts(a);
  for (int64_t i = 0; i < n; i++) adamw_element(k, hp[size_t(i)], g[size_t(i)], hm[size_t(i)], hv[size_t(i)]);
  EXPECT_EQ(rp, hp);
  EXPECT_EQ(rm, hm);
  EXPECT_EQ(rv, hv);
  rp = p, rm = m, rv = v, hp = p, hm = m, hv = v;
  reference::adamw_update_fp16_storage(rp.data(), g.data(), rm.data(), rv.data(), n, a);
  const SmallFormat h = small_format(DType::fp16);
  for (int64_t i = 0; i < n; i++)
    adamw_fp16_storage_element(k, h, hp[size_t(i)], g[size_t(i)], hm[size_t(i)], hv[size_t(i)]);
  EXPECT_EQ(rp, hp);
  EXPECT_EQ(rm, hm);
  EXPECT_EQ(rv, hv);
}

// A softmax row's log-sum-exp by the running (max, sum) in chunks, merged in any grouping.
TEST(CudaDeviceMath, SoftmaxAccumulatorsGiveTheLogSumExp) {
  const std::vector<double> xs = test::random_f32_values(3000, 9, -30.0, 30.0);
  double mx = -INFINITY, s = 0;
  for (double x : xs) mx = std::max(mx, x);
  for (double x : xs) s += std::exp(x - mx);
  const double want = mx + std::log(s);
  SoftmaxAcc whole, left, right;
  for (size_t i = 0; i < xs.size(); i++) {
    whole = softmax_push(whole, float(xs[i]));
    (i < 1000 ? left : right) = softmax_push(i < 1000 ? left : right, float(xs[i]));
  }
  const double tol = test::gamma(int64_t(xs.size()) + 8) * (std::fabs(want) + 1);
  EXPECT_NEAR(softmax_lse(whole), want, tol);
  EXPECT_NEAR(softmax_lse(softmax_merge(left, right)), want, tol);
  EXPECT_EQ(softmax_lse(SoftmaxAcc{}), -INFINITY);
}

// The block reduction's order is a valid sum: within gamma(n) of the exact one, and the same
// value for every replay (the device computes exactly these additions).
TEST(CudaDeviceMath, BlockSumOrderIsASum) {
  for (int64_t n : {1, 31, 32, 33, 768, 5000}) {
    const std::vector<double> x = test::random_f32_values(n, uint64_t(n));
    double exact = 0, mag = 0;
    for (double v : x) exact += v, mag += std::fabs(v);
    for (int nt : {32, 256, 512}) {
      auto f = [&](int64_t i) { return float(x[size_t(i)]); };
      const float got = block_sum_sim(n, nt, f);
      EXPECT_NEAR(got, exact, test::gamma(n) * mag) << n << " " << nt;
      EXPECT_EQ(f2u(got), f2u(block_sum_sim(n, nt, f)));
    }
  }
}

// Layernorm's row statistics as norm.cu forms them (warp partials, two passes).
TEST(CudaDeviceMath, LayernormRowStatistics) {
  const int64_t C = 768;
  const std::vector<double> x = test::random_f32_values(C, 5, -3.0, 5.0);
  std::vector<double> out(static_cast<size_t>(C)), w(static_cast<size_t>(C), 1.0), b(static_cast<size_t>(C), 0.0);
  double mean, rstd;
  reference::layernorm_forward(out.data(), &mean, &rstd, x.data(), w.data(), b.data(), 1, C);
  const float m = block_sum_sim(C, 32, [&](int64_t i) { return float(x[size_t(i)]); }) / float(C);
  const float r = layernorm_rstd(block_sum_sim(C, 32, [&](int64_t i) {
                                   const float d = float(x[size_t(i)]) - m;
                                   return d * d;
                                 }), C);
  EXPECT_NEAR(m, mean, test::gamma(C + 2) * 5.0);
  EXPECT_NEAR(r, rstd, test::gamma(C + 8) * rstd * 4);
}

// ---- cuBLASLt plans ----
void check_plan(const GemmCall& g, uint64_t seed) {
  const int64_t arows = g.trans_a ? g.K : g.M, brows = g.trans_b ? g.N : g.K;
  const std::vector<double> A = test::random_f32_values(arows * g.lda, seed), B = test::random_f32_values(brows * g.ldb, seed + 1);
  std::vector<double> C = test::random_f32_values(g.M * g.ldc, seed + 2), bias = test::random_f32_values(g.N, seed + 3);
  std::vector<float> Cf = test::to_float(C);
  std::vector<double> want = C;
  reference::gemm<double>(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, A.data(), g.lda, B.data(), g.ldb, g.beta,
                          want.data(), g.ldc);
  if (g.bias)
    for (int64_t i = 0; i < g.M; i++)
      for (int64_t j = 0; j < g.N; j++) want[size_t(i * g.ldc + j)] += bias[size_t(j)];
  const LtPlan p = make_lt_plan(g);
  // cuBLASLt's A is meshlm's B.
  run_plan_on_host(p, test::to_float(B).data(), test::to_float(A).data(), Cf.data(), test::to_float(bias).data());
  std::vector<double> bound(want.size(), 1e-5 * double(g.K + 2));
  EXPECT_TRUE(test::within(Cf, want, bound)) << "M " << g.M << " N " << g.N << " K " << g.K << " ta " << g.trans_a
                                             << " tb " << g.trans_b;
}

TEST(CudaGemmPlan, RowMajorCallsMapOntoColumnMajorCuBlasLt) {
  uint64_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t M = 7, N = 5, K = 9;
      GemmCall g{DType::fp32, DType::fp32, ta, tb, M, N, K, (ta ? M : K) + 3, (tb ? K : N) + 2, N + 1, 0.5f, 1.0f,
                 false, DType::fp32};
      check_plan(g, seed += 10);
      g.beta = 0.0f;
      g.bias = true;
      check_plan(g, seed += 10);
    }
  for (bool out_in : {false, true}) {
    check_plan(matmul_forward_call(DType::fp32, 6, 8, 10, out_in, true), seed += 10);
    check_plan(matmul_dinp_call(DType::fp32, 6, 8, 10, out_in), seed += 10);
    check_plan(matmul_dweight_call(DType::fp32, 6, 8, 10, out_in), seed += 10);
  }
  EXPECT_THROW(make_lt_plan({DType::fp32, DType::fp32, false, false, 4, 4, 4, 2, 4, 4}), Error);
}

// gemm_fp8 as cuBLASLt's "TN" call with each operand's format, and when its fp8 kernels take it.
TEST(CudaGemmPlan, Fp8CallsAreTnWithEachOperandsFormat) {
  const DType e4 = DType::fp8_e4m3, e5 = DType::fp8_e5m2;
  const GemmCall g = gemm_fp8_call(e5, e4, 32, 48, 64, 80, 64, 0.25f, 1.0f, DType::bf16, 48, false);
  check_plan(g, 500);
  check_plan(gemm_fp8_call(e4, e4, 7, 5, 9, 12, 9, 0.5f, 0.0f, DType::fp32, 6, true), 510);
  const LtPlan p = make_lt_plan(g);
  EXPECT_TRUE(p.trans_a);
  EXPECT_FALSE(p.trans_b);
  EXPECT_EQ(p.a.dt, e4);  // cuBLASLt's A is meshlm's B
  EXPECT_EQ(p.b.dt, e5);
  EXPECT_EQ(p.c.dt, DType::bf16);
  alignas(16) static char buf[64];
  EXPECT_TRUE(fp8_gemm_native(g, 9, 0, buf, buf));   // Hopper
  EXPECT_TRUE(fp8_gemm_native(g, 8, 9, buf, buf));   // Ada
  EXPECT_FALSE(fp8_gemm_native(g, 8, 0, buf, buf));  // A100: no fp8 tensor cores
  EXPECT_FALSE(fp8_gemm_native(g, 9, 0, buf + 8, buf));
  EXPECT_FALSE(fp8_gemm_native(gemm_fp8_call(e4, e4, 7, 5, 9, 9, 9, 1.0f, 0.0f, DType::fp32, 5, false), 9, 0, buf, buf));
  EXPECT_FALSE(fp8_gemm_native(matmul_forward_call(DType::bf16, 64, 64, 64, false, false), 9, 0, buf, buf));
  EXPECT_THROW(gemm_fp8_call(e5, e5, 16, 16, 16, 16, 16, 1.0f, 0.0f, DType::fp32, 16, false), Error);
  EXPECT_THROW(gemm_fp8_call(e4, e4, 16, 16, 16, 16, 16, 1.0f, 0.0f, DType::fp16, 16, false), Error);
  EXPECT_THROW(gemm_fp8_call(e4, e4, 16, 16, 16, 8, 16, 1.0f, 0.0f, DType::fp32, 16, false), Error);
  const LtPlan q = make_lt_plan(gemm_fp8_call(e4, e4, 32, 48, 64, 80, 64, 0.25f, 1.0f, DType::bf16, 48, false));
  EXPECT_FALSE(algo_key(p, buf, buf, buf) == algo_key(q, buf, buf, buf));  // the formats are in the key
}

TEST(CudaGemmPlan, AlgorithmKeysSeparateWhatTheChoiceDependsOn) {
  alignas(16) static char buf[64];
  const LtPlan p = make_lt_plan(matmul_forward_call(DType::bf16, 64, 768, 2304, false, true));
  const AlgoKey k = algo_key(p, buf, buf, buf);
  EXPECT_EQ(k, algo_key(p, buf, buf, buf));
  EXPECT_EQ(AlgoKeyHash{}(k), AlgoKeyHash{}(algo_key(p, buf, buf, buf)));
  std::set<size_t> hashes = {AlgoKeyHash{}(k)};
  std::vector<LtPlan> others(6, p);
  others[0].m++, others[1].k++, others[2].bias = false, others[3].beta = 1.0f, others[4].c.dt = DType::fp32;
  others[5].trans_a = !p.trans_a;
  for (const LtPlan& o : others) {
    EXPECT_FALSE(algo_key(o, buf, buf, buf) == k);
    hashes.insert(AlgoKeyHash{}(algo_key(o, buf, buf, buf)));
  }
  EXPECT_FALSE(algo_key(p, buf + 2, buf, buf) == k);  // alignment 2 instead of 16
  EXPECT_EQ(hashes.size(), 7u);
  EXPECT_EQ(alignment_of(buf + 8), 8);
  EXPECT_EQ(alignment_of(buf + 1), 1);
}

// ---- launch shapes ----
TEST(CudaLaunch, GridStrideAndRowShapesCoverEveryElementOnce) {
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(255), int64_t(256), int64_t(257), int64_t(100000), int64_t(5000000)}) {
    const Launch L = grid_stride(n);
    ASSERT_GE(L.grid, 1u);
    ASSERT_LE(L.grid, 8192u);
    ASSERT_LE(L.block, kMaxBlock);
    std::vector<int> seen(size_t(n), 0);
    const int64_t threads = int64_t(L.grid) * L.block;
    for (int64_t t = 0; t < threads; t++)
      for (int64_t i = t; i < n; i += threads) seen[size_t(i)]++;
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(seen[size_t(i)], 1) << n;
  }
  for (int64_t rows : {1, 3, 4, 5, 4097}) {
    const Launch L = warp_rows(rows);
    EXPECT_GE(int64_t(L.grid) * (L.block / 32), rows);
    EXPECT_LT(int64_t(L.grid - 1) * (L.block / 32), rows);
    EXPECT_EQ(L.block % 32, 0u);
  }
  EXPECT_LE(attention_rows(1000).shared, kDefaultShared);
  EXPECT_EQ(chunks(64), 2);
  EXPECT_EQ(chunks(65), 3);
  EXPECT_EQ(layernorm_backward_scratch(65, 10), 3 * 20);
}

// The transposing quantizer's tiles: every element read once and written once, to its
// transposed place, from the shared-memory slot it was read into.
TEST(CudaLaunch, TransposeTilesCoverEveryElementOnce) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {37, 45}, {64, 96}, {33, 1}, {300, 70}}) {
    const Launch L = tiles(rows, cols);
    ASSERT_EQ(L.block, uint32_t(kTileThreads));
    const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
    ASSERT_EQ(tile_count(rows, cols), tr * tc);
    std::vector<int> read(size_t(rows * cols), 0), written(size_t(rows * cols), 0);
    for (int64_t b = 0; b < int64_t(L.grid); b++)
      for (int64_t tl = b; tl < tr * tc; tl += L.grid)
        for (int t = 0; t < kTileThreads; t++)
          for (int k = 0; k < kTile / kTileRowsPerPass; k++) {
            const TileCoord e = tile_element(tl, tc, t, k);
            if (e.row < rows && e.col < cols) read[size_t(e.row * cols + e.col)]++;
            const TileCoord o = tile_element(transposed_tile(tl, tr, tc), tr, t, k);  // (cols, rows) of q
            if (o.row >= cols || o.col >= rows) continue;
            // The slot written from, (t % 32, t / 32 + 8 k), holds x's element of the read map:
            const TileCoord from = tile_element(tl, tc, (t % kTile) * kTile + t / kTile + kTileRowsPerPass * k, 0);
            ASSERT_EQ(from.row, o.col);
            ASSERT_EQ(from.col, o.row);
            written[size_t(o.col * cols + o.row)]++;
          }
    for (size_t i = 0; i < read.size(); i++) ASSERT_TRUE(read[i] == 1 && written[i] == 1) << rows << "x" << cols << " " << i;
  }
}

// ---- tensor-core attention (attention_tc.cu): its blocks, lanes, shared memory, row algebra ----
TEST(CudaTcAttention, BlocksCoverEveryTileOnceHeaviestFirst) {
  for (int64_t T : {1, 63, 64, 65, 1024})
    for (auto [NH, NKV] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {3, 1}}) {
      AttentionShape a{2, T, NH, NKV, 64, 3 * NH * 64, 3 * NH * 64};
      const int64_t n = tc_tiles(T);
      ASSERT_EQ(n, (T + 63) / 64);
      std::set<std::tuple<int64_t, int64_t, int64_t>> q, k;
      for (int64_t b = 0; b < a.B * NH * n; b++) {
        const TcTile x = tc_query_block(b, a);
        ASSERT_TRUE(x.b < a.B && x.head < NH && x.tile < n);
        q.insert({x.b, x.head, x.tile});
        if (b % n == 0) {
          EXPECT_EQ(x.tile, n - 1);  // the longest query rows first
        }
      }
      for (int64_t b = 0; b < a.B * NKV * n; b++) {
        const TcTile x = tc_key_block(b, a);
        ASSERT_TRUE(x.b < a.B && x.head < NKV && x.tile < n);
        k.insert({x.b, x.head, x.tile});
        if (b % n == 0) {
          EXPECT_EQ(x.tile, 0);  // the keys with the most queries after them first
        }
      }
      EXPECT_EQ(int64_t(q.size()), a.B * NH * n);
      EXPECT_EQ(int64_t(k.size()), a.B * NKV * n);
    }
}

TEST(CudaTcAttention, LanesOwnEachScoreAndChannelOnce) {
  std::vector<int> scores(kTcWarpRows * kTcRows, 0), channels(kTcWarpRows * 128, 0);
  for (int lane = 0; lane < kWarp; lane++) {
    const TcLane me = tc_lane(lane);
    for (int c = me.col0; c < me.col0 + kTcLaneCols; c++) scores[size_t(me.row * kTcRows + c)]++;
    for (int c = (lane % 2) * 64; c < (lane % 2 + 1) * 64; c++) channels[size_t(me.row * 128 + c)]++;
  }
  for (int v : scores) ASSERT_EQ(v, 1);
  for (int v : channels) ASSERT_EQ(v, 1);
  EXPECT_EQ(kTcWarps * kTcWarpRows, kTcRows);
}

// Regions 32-byte aligned (wmma's pointers), disjoint, within an H100's 227 KiB opt-in up to
// HS 128; past the default 48 KiB already at HS 64 (the kernels opt in).
TEST(CudaTcAttention, SharedMemoryPlans) {
  for (int64_t HS : {16, 64, 128})
    for (const TcSmem& m : {tc_forward_smem(HS), tc_dq_smem(HS), tc_dkv_smem(HS)}) {
      std::vector<std::pair<size_t, size_t>> used;
      auto region = [&](size_t off, size_t bytes) {
        if (bytes == 0) return;
        EXPECT_EQ(off % 32, 0u);
        EXPECT_LE(off + bytes, m.bytes);
        for (auto [o, b] : used) EXPECT_TRUE(off + bytes <= o || o + b <= off) << "overlap at " << off;
        used.push_back({off, bytes});
      };
      const size_t tile = size_t(kTcRows * HS) * 2, ws = size_t(kTcWarps * kTcWarpRows * kTcRows);
      region(m.q, tile);
      if (m.v) region(m.v, tile);
      region(m.k, tile);
      region(m.s, ws * 4);
      region(m.acc, size_t(kTcWarps * kTcWarpRows * HS) * 4);
      if (m.dout) {  // the backward kernels'
        region(m.dout, tile);
        region(m.lse, kTcRows * 4);
        region(m.delta, kTcRows * 4);
        region(m.dp, ws * 4);
        region(m.ds, ws * 2);
      }
      if (m.p) region(m.p, ws * 2);
      if (m.acc2) region(m.acc2, size_t(kTcWarps * kTcWarpRows * HS) * 4);
      EXPECT_LE(m.bytes, size_t(227) << 10) << HS;
    }
  EXPECT_GT(tc_forward_smem(64).bytes, size_t(48) << 10);
  const AttentionShape gpt2{16, 1024, 12, 12, 64, 3 * 768, 3 * 768};
  EXPECT_TRUE(tc_attention_fits(gpt2, DType::bf16, size_t(227) << 10));
  EXPECT_TRUE(tc_attention_fits(gpt2, DType::fp16, size_t(227) << 10));
  EXPECT_FALSE(tc_attention_fits(gpt2, DType::fp32, size_t(227) << 10));
  EXPECT_FALSE(tc_attention_fits(gpt2, DType::bf16, size_t(48) << 10));
  for (int64_t HS : {8, 24, 256}) {
    AttentionShape a = gpt2;
    a.HS = HS;
    EXPECT_FALSE(tc_attention_fits(a, DType::bf16, size_t(227) << 10)) << HS;
  }
}

// A row's online softmax as the forward kernel runs it (tiles of 64 keys, each split between two
// lanes, the output rescaled by corr) gives the direct softmax's lse and weighted sum.
TEST(CudaTcAttention, OnlineSoftmaxOverTilesIsTheSoftmax) {
  for (int64_t n : {1, 17, 64, 65, 300}) {
    const std::vector<double> s = test::random_values(n, uint64_t(n), -8.0, 8.0), v = test::random_values(n, 99, -1.0, 1.0);
    float m = -INFINITY, l = 0, o = 0;
    for (int64_t j0 = 0; j0 < n; j0 += kTcRows) {
      float half_max[2] = {-INFINITY, -INFINITY};
      for (int h = 0; h < 2; h++)
        for (int c = h * kTcLaneCols; c < (h + 1) * kTcLaneCols && j0 + c < n; c++)
          half_max[h] = std::max(half_max[h], float(s[size_t(j0 + c)]));
      const TcSoftmaxStep st = tc_softmax_step(m, std::max(half_max[0], half_max[1]));
      float sum[2] = {0, 0}, pv = 0;
      for (int h = 0; h < 2; h++)
        for (int c = h * kTcLaneCols; c < (h + 1) * kTcLaneCols && j0 + c < n; c++) {
          const float p = std::exp(float(s[size_t(j0 + c)]) - st.m_new);
          sum[h] += p;
          pv += p * float(v[size_t(j0 + c)]);
        }
      l = l * st.corr + (sum[0] + sum[1]);
      o = o * st.corr + pv;
      m = st.m_new;
    }
    double mx = -INFINITY, z = 0, want = 0;
    for (double x : s) mx = std::max(mx, x);
    for (int64_t i = 0; i < n; i++) z += std::exp(s[size_t(i)] - mx), want += std::exp(s[size_t(i)] - mx) * v[size_t(i)];
    EXPECT_NEAR(m + std::log(l), mx + std::log(z), 1e-5 * (1 + std::fabs(mx))) << n;
    EXPECT_NEAR(o / l, want / z, 1e-5) << n;
  }
  EXPECT_EQ(tc_probability(3.0f, 0.5f, 1.5f, true), 0.0f);
  EXPECT_FLOAT_EQ(tc_probability(3.0f, 0.5f, 1.5f, false), 1.0f);
  EXPECT_FLOAT_EQ(tc_score_grad(0.25f, 2.0f, 1.0f, 0.5f), 0.125f);
}

// ---- quantize_blocks on the device (quantize.cu): its arithmetic and its steps on the host ----
std::vector<QuantSpec> quant_specs() {
  auto spec = [](Elem e, ScaleKind sk, Granularity g, int axis, int64_t block) {
    QuantSpec q;
    q.elem = e, q.scale = sk, q.granularity = g, q.axis = axis, q.block = block;
    return q;
  };
  std::vector<QuantSpec> out;
  for (int axis : {0, 1}) {
    for (Elem e : {Elem::e4m3, Elem::e5m2, Elem::e2m3, Elem::e3m2, Elem::e2m1})
      for (bool up : {true, false}) {
        out.push_back(spec(e, ScaleKind::e8m0, Granularity::block, axis, 32));
        out.back().round_up = up;
      }
    out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16));
    out.push_back(spec(Elem::e4m3, ScaleKind::pow2, Granularity::tensor, axis, 32));
    out.push_back(spec(Elem::e5m2, ScaleKind::pow2, Granularity::vector, axis, 32));
    out.push_back(spec(Elem::e4m3, ScaleKind::given, Granularity::tensor, axis, 32));
    out.back().given = 64.0f;
    out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16));
    out.back().hadamard = true, out.back().hadamard_seed = 9;
    out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::block, axis, 16));
    out.back().stochastic = true, out.back().seed = 3, out.back().stream = 17;
  }
  out.push_back(spec(Elem::e2m1, ScaleKind::e4m3, Granularity::tile, 1, 16));
  out.push_back(spec(Elem::e4m3, ScaleKind::e8m0, Granularity::tile, 0, 32));
  return out;
}

TEST(CudaQuantize, ElementRoundingIsCoresBitForBit) {
  const std::vector<float> xs = probe_floats();
  for (Elem e : {Elem::e4m3, Elem::e5m2, Elem::e3m2, Elem::e2m3, Elem::e2m1}) {
    const ElemF f = elem_f(e);
    int bad = 0;
    for (size_t i = 0; i < xs.size(); i++) {
      const float x = xs[i] * 64.0f;
      bad += !same_bits_or_nan(round_elem(f, x), round_to_elem(elem_info(e), x));
      const uint32_t r = random_u32(5, 6, i);
      if (std::isfinite(x)) bad += !same_bits_or_nan(round_elem_stochastic(f, x, r), round_to_elem_stochastic(elem_info(e), x, r));
    }
    EXPECT_EQ(bad, 0) << elem_info(e).name;
  }
}

TEST(CudaQuantize, BlockMultipliersAreCores) {
  const std::vector<float> amaxes = {0.0f, 1e-30f, 1e-6f, 0.37f, 1.0f, 6.0f, 448.0f, 3e5f, 1e30f, 0x1p-127f};
  for (const QuantSpec& spec : quant_specs())
    for (float amax : amaxes)
      for (bool nonfinite : {false, true})
        for (float S : {1.0f, 2688.0f / 3.5f, 0.25f}) {
          const float want = block_multiplier(spec, amax, nonfinite, S), got = block_mult(quant_params(spec), amax, nonfinite, S);
          ASSERT_TRUE(same_bits_or_nan(got, want)) << spec.describe() << " amax " << amax << " " << nonfinite << " S " << S;
        }
  for (float amax : amaxes) EXPECT_EQ(e4m3_scale_of_tensor(elem_f(Elem::e2m1), amax), e4m3_tensor_scale(elem_info(Elem::e2m1), amax));
}

TEST(CudaQuantize, BlockRangesPartitionTheMatrix) {
  for (const QuantSpec& spec : quant_specs())
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{48, 80}, {37, 70}, {64, 1}, {1, 33}}) {
      const QuantParams q = quant_params(spec);
      std::vector<int> seen(size_t(rows * cols), 0);
      for (int64_t b = 0; b < block_count(q, rows, cols); b++) {
        const BlockRange R = block_range(q, rows, cols, b);
        for (int64_t r = R.r0; r < R.r1; r++)
          for (int64_t c = R.c0; c < R.c1; c++) {
            ASSERT_EQ(block_of(q, cols, r, c), spec.granularity == Granularity::tensor ? 0 : b) << spec.describe();
            seen[size_t(r * cols + c)]++;
          }
      }
      for (int v : seen) ASSERT_EQ(v, 1) << spec.describe() << " " << rows << "x" << cols;
    }
}

// The kernels' five steps (quantize.cu), run on the host with the same functions, against the
// reference kernel: outputs bit for bit and the same counts.
TEST(CudaQuantize, TheKernelsStepsAreTheReference) {
  for (const QuantSpec& spec : quant_specs())
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{48, 80}, {37, 70}, {64, 1}}) {
      if (spec.hadamard && (spec.axis == 1 ? cols : rows) % 16 != 0) continue;
      const int64_t n = rows * cols;
      std::vector<uint16_t> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; i++) {
        const double mag = std::pow(10.0, 6 * uniform01(uint64_t(n), 1, uint64_t(i)) - 4) * (i % 97 == 5 ? 100 : 1);
        x[size_t(i)] = f32_to_bf16(float((uniform01(uint64_t(n), 2, uint64_t(i)) - 0.5) * mag));
      }
      if (n > 40) x[40] = f32_to_bf16(INFINITY);  // a non-finite block
      std::vector<uint16_t> want(x.size()), h = x, y(x.size());
      const TensorStats ws = reference::quantize_blocks_bf16(spec, want.data(), x.data(), rows, cols);
      const QuantParams q = quant_params(spec);
      if (spec.hadamard)  // 1.
        for (int64_t g = 0; g < n / 16; g++) {
          const HadamardGroup G = hadamard_group(spec.axis, cols, g);
          float v[16];
          for (int i = 0; i < 16; i++) v[i] = bf16_to_f32(x[size_t(G.first + i * G.stride)]);
          hadamard16_local(v, q.signs);
          for (int i = 0; i < 16; i++) h[size_t(G.first + i * G.stride)] = f32_to_bf16(v[i]);
        }
      float tamax = 0;  // 2.
      bool tnonfinite = false;
      for (uint16_t b : h) {
        const float a = abs_f(bf16_to_f32(b));
        is_finite(a) ? void(tamax = std::max(tamax, a)) : void(tnonfinite = true);
      }
      const int64_t nb = block_count(q, rows, cols);
      std::vector<float> m(static_cast<size_t>(nb));
      for (int64_t b = 0; b < nb; b++) {  // 3. and 4.
        const BlockRange R = block_range(q, rows, cols, b);
        float a = 0;
        bool nf = false;
        for (int64_t r = R.r0; r < R.r1; r++)
          for (int64_t c = R.c0; c < R.c1; c++) {
            const float v = abs_f(bf16_to_f32(h[size_t(r * cols + c)]));
            is_finite(v) ? void(a = std::max(a, v)) : void(nf = true);
          }
        const float S = spec.scale == ScaleKind::e4m3 ? e4m3_scale_of_tensor(q.f, tamax) : 1.0f;
        m[size_t(b)] = block_mult(q, a, nf, S);
      }
      TensorStats gs;  // 5.
      for (int64_t i = 0; i < n; i++) {
        const QuantOut o = quantize_element(q, bf16_to_f32(h[size_t(i)]), m[size_t(block_of(q, cols, i / cols, i % cols))], i);
        y[size_t(i)] = f32_to_bf16(o.y);
        gs.overflow += o.overflow, gs.zero += o.zero, gs.underflow += o.underflow, gs.subnormal += o.subnormal;
      }
      for (int64_t i = 0; i < n; i++)
        ASSERT_TRUE(same_bits_or_nan(bf16_to_f32(y[size_t(i)]), bf16_to_f32(want[size_t(i)])))
            << spec.describe() << " " << rows << "x" << cols << " at " << i;
      EXPECT_EQ(double(tamax), ws.amax) << spec.describe();
      EXPECT_EQ(gs.overflow, ws.overflow) << spec.describe();
      EXPECT_EQ(gs.zero, ws.zero) << spec.describe();
      EXPECT_EQ(gs.underflow, ws.underflow) << spec.describe();
      EXPECT_EQ(gs.subnormal, ws.subnormal) << spec.describe();
    }
}

// ---- the caching pool, over malloc with a limit ----
TEST(CudaCachingPool, ReusesBlocksAndRetriesAfterReleasingTheCache) {
  size_t live = 0, raw_frees = 0;
  std::map<void*, size_t> sizes;
  const size_t limit = size_t(8) << 20;
  CachingPool pool(
      [&](size_t b) -> void* {
        if (live + b > limit) return nullptr;
        live += b;
        void* p = std::malloc(b);
        sizes[p] = b;
        return p;
      },
      [&](void* p) {
        raw_frees++;
        live -= sizes[p];
        std::free(p);
      });
  EXPECT_EQ(CachingPool::size_class(1), 512u);
  EXPECT_EQ(CachingPool::size_class(513), 1024u);
  EXPECT_EQ(CachingPool::size_class((size_t(1) << 20) + 1), size_t(2) << 20);
  void* a = pool.allocate(1000);
  pool.deallocate(a);
  void* b = pool.allocate(900);  // the same class: the cached block comes back
  EXPECT_EQ(a, b);
  EXPECT_EQ(pool.raw_allocations(), 1u);
  void* big = pool.allocate(size_t(6) << 20);
  pool.deallocate(big);  // cached: 6 MiB
  void* other = pool.allocate(size_t(4) << 20);  // does not fit beside the cache: released, retried
  EXPECT_NE(other, nullptr);
  EXPECT_EQ(raw_frees, 1u);
  EXPECT_THROW(pool.allocate(size_t(16) << 20), Error);
  EXPECT_THROW(pool.deallocate(reinterpret_cast<void*>(&live)), Error);
  pool.deallocate(other);
  pool.deallocate(b);
  EXPECT_EQ(pool.in_use(), 0u);
}

// ---- device choice and NCCL's equal blocks ----
TEST(CudaBootstrap, DeviceFromLocalRankAndPaddedBlocks) {
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);
  EXPECT_EQ(local_rank_from_env(), 5);
  EXPECT_EQ(choose_device(-1, 5, 4), 1);
  EXPECT_EQ(choose_device(-1, -1, 2), 0);
  EXPECT_EQ(choose_device(1, 5, 2), 1);
  EXPECT_THROW(choose_device(2, 0, 2), Error);
  EXPECT_THROW(choose_device(-1, 0, 0), Error);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const PaddedBlocks p = pad_blocks({3, 5, 0});
  EXPECT_EQ(p.block, 5);
  EXPECT_EQ(p.offset, (std::vector<int64_t>{0, 3, 8}));
  EXPECT_EQ(p.total(), 15);
  EXPECT_TRUE(p.padded);
  EXPECT_FALSE(pad_blocks({4, 4}).padded);
}

// ---- the loader ----
TEST(CudaLoader, ReportsTheBuildAndFailsInOneLineWithoutAGpu) {
  EXPECT_GT(count_ops(), 30);
  const CudaStatus st = cuda_status();
  EXPECT_FALSE(st.detail.empty());
  EXPECT_EQ(st.detail.find('\n'), std::string::npos);
  if (st.devices > 0) GTEST_SKIP() << "a GPU is usable here: " << st.detail;
  try {
    make_cuda_backend();
    FAIL() << "a cuda backend without a device";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("cuda backend: ", 0), 0u) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_THROW(make_backend("cuda"), Error);
}

}  // namespace
}  // namespace meshlm::cuda
