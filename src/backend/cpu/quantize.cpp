// quantize_blocks on the cpu backend (ops.inc; the definitions in core/formats.h): bf16 in and
// out, elements rounded by bit arithmetic on their fp32 form (round_to_elem), threads over rows
// (scales along a row) or over panels of rows x columns (scales along a column, 2-D tiles).
// Bit-identical to the reference (reference/quantize.cpp), which test_quantize checks.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "core/lowp.h"
#include "core/rng.h"

namespace meshlm::cpu {
namespace {

using lowp::bf16_to_f32;
using lowp::f32_to_bf16;

// What the elements of one thread saw (TensorStats without the amax).
struct Counts {
  int64_t zero = 0, underflow = 0, subnormal = 0, overflow = 0;
};

// y[i] for x[i] under multiplier m: quantized, read back, counted (any value, any m).
inline uint16_t quantize_one(const QuantSpec& q, const ElemInfo& f, uint16_t xb, float m, int64_t i, Counts& k) {
  const float v = bf16_to_f32(xb);
  if (!(std::fabs(v) <= 3.4028235e38f)) {
    k.overflow++;
    return std::isnan(m) ? f32_to_bf16(NAN) : xb;
  }
  if (std::isnan(m)) return f32_to_bf16(NAN);
  const float t = v * m;
  if (std::fabs(t) > saturation_limit(q, f)) k.overflow++;
  const float e = q.stochastic ? round_to_elem_stochastic(f, t, random_u32(q.seed, q.stream, uint64_t(i)))
                               : round_to_elem(f, t);
  const float out = dequantize(e, m);
  if (v == 0) k.zero++;
  else if (out == 0) k.underflow++;
  if (e != 0 && std::fabs(e) < f.min_normal) k.subnormal++;
  return f32_to_bf16(out);
}

// The common case of a run of len values: finite, a finite non-zero multiplier per value
// (m[0] for the run, or m[j] per column with PerColumn), round to nearest. The arithmetic of
// quantize_one and round_to_elem, written for the vectorizer: both roundings computed and
// one selected, signs and the bf16 rounding as bit operations (every value here is finite),
// counts as sums of comparisons.
constexpr int64_t kPanel = 256;  // values one pass covers: long enough for the vector loops

// Stochastic rounding as round_to_elem_stochastic does it: up with probability (a - lo) / gap,
// decided by u, uniform in [0, 1): the 24 high bits of the random bits (a finite, non-negative).
inline float stochastic_magnitude(float a, float u, int man_bits, float min_normal, float quantum,
                                  float max_finite) {
  uint32_t ab;
  std::memcpy(&ab, &a, 4);
  const uint32_t gb = (ab & 0x7f800000u) - (uint32_t(man_bits) << 23);
  float gap;
  std::memcpy(&gap, &gb, 4);
  gap = a >= min_normal ? gap : quantum;
  const float scaled = a / gap, lo = float(int32_t(scaled));  // floor: 0 <= scaled < 2^(man_bits + 1)
  const float r = (u < scaled - lo ? lo + 1.0f : lo) * gap;
  return a >= max_finite ? max_finite : r;
}

// Round to nearest even as round_to_elem does it (a finite, non-negative): both roundings
// computed and one selected, so that it vectorizes.
inline float nearest_magnitude(float a, int drop, uint32_t half, uint32_t keep, float min_normal, float quantum,
                               float inv_quantum) {
  uint32_t ab;
  std::memcpy(&ab, &a, 4);
  const uint32_t rb = (ab + half + ((ab >> drop) & 1u)) & keep;
  float rn;
  std::memcpy(&rn, &rb, 4);
  const float rs = std::nearbyint(a * inv_quantum) * quantum;
  return a >= min_normal ? rn : rs;
}

// The common case of a run of len <= kPanel values: finite, a finite non-zero multiplier per
// value (m[0] for the run, or m[j] per column with PerColumn). The arithmetic of quantize_one,
// written for the vectorizer: signs and the bf16 rounding as bit operations (every value here
// is finite), counts as sums of comparisons, the random bits drawn in a loop of their own.
template <bool PerColumn, bool Stochastic>
void quantize_finite_run(const QuantSpec& q, const ElemInfo& f, uint16_t* __restrict y, const uint16_t* __restrict x,
                         int64_t len, const float* __restrict m, int64_t i0, Counts& k) {
  const int drop = 23 - f.man_bits;
  const uint32_t half = (1u << (drop - 1)) - 1, keep = ~((1u << drop) - 1);
  const float quantum = f.quantum(), inv_quantum = 1.0f / quantum, min_normal = f.min_normal;
  const float max_finite = f.max_finite, limit = saturation_limit(q, f);
  float uniform[kPanel];
  if constexpr (Stochastic) {
    const uint64_t base = random_base(q.seed, q.stream);
#pragma omp simd
    for (int64_t j = 0; j < len; j++) uniform[j] = float(int32_t(random_bits(base, uint64_t(i0 + j)) >> 8)) * 0x1p-24f;
  }
  int32_t zero = 0, under = 0, sub = 0, over = 0;  // len <= kPanel
#pragma omp simd reduction(+ : zero, under, sub, over)
  for (int32_t j = 0; j < int32_t(len); j++) {
    const float mj = PerColumn ? m[j] : m[0];
    const uint32_t xb = uint32_t(x[j]) << 16;
    float v;
    std::memcpy(&v, &xb, 4);
    const float t = v * mj;
    uint32_t tb;
    std::memcpy(&tb, &t, 4);
    const uint32_t sign = tb & 0x80000000u, ab = tb & 0x7fffffffu;
    float a;
    std::memcpy(&a, &ab, 4);
    float r = Stochastic ? stochastic_magnitude(a, uniform[j], f.man_bits, min_normal, quantum, max_finite)
                         : nearest_magnitude(a, drop, half, keep, min_normal, quantum, inv_quantum);
    r = r < max_finite ? r : max_finite;
    uint32_t eb;
    std::memcpy(&eb, &r, 4);
    eb |= sign;
    float e;
    std::memcpy(&e, &eb, 4);
    const float out = e / mj;
    uint32_t ob;
    std::memcpy(&ob, &out, 4);
    y[j] = uint16_t((ob + 0x7fffu + ((ob >> 16) & 1u)) >> 16);
    zero += v == 0;
    under += (v != 0) & (out == 0);
    sub += (r != 0) & (r < min_normal);
    over += a > limit;
  }
  k.zero += zero, k.underflow += under, k.subnormal += sub, k.overflow += over;
}

// A run of len values x[j] (index i0 + j) under multipliers m[j * m_step]: the fast loop when
// it applies, else value by value.
void quantize_run(const QuantSpec& q, const ElemInfo& f, uint16_t* y, const uint16_t* x, int64_t len, const float* m,
                  int64_t m_step, bool nonfinite, int64_t i0, Counts& k) {
  bool fast = !nonfinite;
  for (int64_t j = 0; fast && j < (m_step ? len : 1); j++) fast = m[j * m_step] > 0 && std::isfinite(m[j * m_step]);
  for (int64_t j = 0; fast && j < len; j += kPanel) {
    const int64_t n = std::min(kPanel, len - j);
    const float* mj = m + j * m_step;
    if (q.stochastic && m_step) quantize_finite_run<true, true>(q, f, y + j, x + j, n, mj, i0 + j, k);
    else if (q.stochastic) quantize_finite_run<false, true>(q, f, y + j, x + j, n, mj, i0 + j, k);
    else if (m_step) quantize_finite_run<true, false>(q, f, y + j, x + j, n, mj, i0 + j, k);
    else quantize_finite_run<false, false>(q, f, y + j, x + j, n, mj, i0 + j, k);
  }
  if (fast) return;
  for (int64_t j = 0; j < len; j++) y[j] = quantize_one(q, f, x[j], m[j * m_step], i0 + j, k);
}

// The finite amax of n values `stride` apart, and whether a non-finite one is among them: on
// the magnitudes' bits (ordered as the values are), so that it vectorizes.
inline float run_amax(const uint16_t* x, int64_t n, int64_t stride, bool& nonfinite) {
  uint32_t amax = 0, bad = 0;
#pragma omp simd reduction(max : amax) reduction(| : bad)
  for (int64_t j = 0; j < n; j++) {
    const uint32_t u = uint32_t(x[j * stride] & 0x7fffu);
    const uint32_t finite = u < 0x7f80u;
    bad |= 1u - finite;
    amax = std::max(amax, finite ? u : 0u);
  }
  if (bad) nonfinite = true;
  return bf16_to_f32(uint16_t(amax));
}

// The finite amax of each of w <= kPanel columns over h rows (row stride ld), walked row by row so
// that it vectorizes across the columns; nonfinite[c] set where a column holds inf or NaN.
inline void column_amax(const uint16_t* x, int64_t h, int64_t w, int64_t ld, float* amax, bool* nonfinite) {
  uint32_t a[kPanel] = {}, bad[kPanel] = {};
  for (int64_t r = 0; r < h; r++) {
    const uint16_t* row = x + r * ld;
#pragma omp simd
    for (int64_t c = 0; c < w; c++) {
      const uint32_t u = uint32_t(row[c] & 0x7fffu), finite = u < 0x7f80u;
      bad[c] |= 1u - finite;
      a[c] = std::max(a[c], finite ? u : 0u);
    }
  }
  for (int64_t c = 0; c < w; c++) {
    amax[c] = bf16_to_f32(uint16_t(a[c]));
    nonfinite[c] = bad[c] != 0;
  }
}

// hadamard16 along rows (axis 1: each 16 of a row) or columns (axis 0: 16 rows at a time,
// the butterflies applied across the rows of a 64-column panel, so they vectorize over
// columns); the same operations in the same order as hadamard16, then rounded to bf16.
void hadamard_bf16(const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols) {
  const int64_t len = q.axis == 1 ? cols : rows;
  MESHLM_CHECK(len % 16 == 0, "quantize_blocks: the Hadamard transform needs a multiple of 16 along the axis");
  const uint16_t signs = hadamard_signs(q.hadamard_seed);
  if (q.axis == 1) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < rows * cols / 16; k++) {
      float v[16];
      for (int j = 0; j < 16; j++) v[j] = bf16_to_f32(x[k * 16 + j]);
      hadamard16(v, 1, signs);
      for (int j = 0; j < 16; j++) y[k * 16 + j] = f32_to_bf16(v[j]);
    }
    return;
  }
  const int64_t panels = (rows / 16) * ((cols + 63) / 64);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; p++) {
    const int64_t r0 = (p / ((cols + 63) / 64)) * 16, c0 = (p % ((cols + 63) / 64)) * 64;
    const int64_t w = std::min<int64_t>(64, cols - c0);
    float v[16][64];
    for (int i = 0; i < 16; i++) {
      const float sgn = (signs >> i & 1) ? -1.0f : 1.0f;
      for (int64_t c = 0; c < w; c++) v[i][c] = sgn * bf16_to_f32(x[(r0 + i) * cols + c0 + c]);
    }
    for (int h = 1; h < 16; h *= 2)
      for (int i = 0; i < 16; i += 2 * h)
        for (int j = i; j < i + h; j++)
#pragma omp simd
          for (int64_t c = 0; c < w; c++) {
            const float a = v[j][c], b = v[j + h][c];
            v[j][c] = a + b;
            v[j + h][c] = a - b;
          }
    for (int i = 0; i < 16; i++)
      for (int64_t c = 0; c < w; c++) y[(r0 + i) * cols + c0 + c] = f32_to_bf16(v[i][c] * 0.25f);
  }
}

// One quantize_blocks call: the operand, its format, and the tensor-wide figures.
struct Call {
  const QuantSpec& q;
  const ElemInfo& f;
  uint16_t* y;
  const uint16_t* x;
  int64_t rows, cols;
  float tensor_scale;  // NVFP4's S (1 for other scales)
};

// One scale per row (a vector along axis 1).
void quantize_per_row(const Call& c, Counts& k) {
#pragma omp for schedule(static)
  for (int64_t r = 0; r < c.rows; r++) {
    bool nf = false;
    const float a = run_amax(c.x + r * c.cols, c.cols, 1, nf);  // before nf is read
    const float m = block_multiplier(c.q, a, nf, c.tensor_scale);
    quantize_run(c.q, c.f, c.y + r * c.cols, c.x + r * c.cols, c.cols, &m, 0, nf, r * c.cols, k);
  }
}

// One scale per `block` of a row: a chunk of kPanel values (a multiple of the block) at a
// time, its blocks' multipliers spread per element so that one long run quantizes the chunk.
void quantize_row_blocks(const Call& c, Counts& k) {
  const int64_t chunk = kPanel % c.q.block == 0 ? kPanel : c.q.block;
#pragma omp for schedule(static)
  for (int64_t r = 0; r < c.rows; r++)
    for (int64_t c0 = 0; c0 < c.cols; c0 += chunk) {
      const int64_t len = std::min(chunk, c.cols - c0), i0 = r * c.cols + c0;
      float m[kPanel];
      bool any = false;
      for (int64_t b0 = 0; b0 < len; b0 += c.q.block) {
        const int64_t bl = std::min(c.q.block, len - b0);
        bool nf = false;
        const float a = run_amax(c.x + i0 + b0, bl, 1, nf);
        std::fill(m + b0, m + b0 + bl, block_multiplier(c.q, a, nf, c.tensor_scale));
        any = any || nf;
      }
      quantize_run(c.q, c.f, c.y + i0, c.x + i0, len, m, 1, any, i0, k);
    }
}

// Scales along a column (per block of rows, or per whole column) and 2-D tiles: panels of
// `height` rows x `width` columns, each column's amax walked row by row, the multipliers per
// column (a tile's shared by its `block` columns).
void quantize_panels(const Call& c, Counts& k) {
  const QuantSpec& q = c.q;
  MESHLM_CHECK(q.granularity != Granularity::tile || q.block <= kPanel, "quantize_blocks: tiles of at most 256");
  const int64_t height = q.granularity == Granularity::vector ? c.rows : q.block;
  const int64_t width = q.granularity != Granularity::tile || kPanel % q.block == 0 ? kPanel : q.block;
  const int64_t row_groups = (c.rows + height - 1) / height, col_groups = (c.cols + width - 1) / width;
#pragma omp for schedule(static)
  for (int64_t p = 0; p < row_groups * col_groups; p++) {
    const int64_t r0 = (p / col_groups) * height, c0 = (p % col_groups) * width;
    const int64_t h = std::min(height, c.rows - r0), w = std::min(width, c.cols - c0);
    float m[kPanel] = {};
    bool nf[kPanel] = {};
    column_amax(c.x + r0 * c.cols + c0, h, w, c.cols, m, nf);
    const bool any = std::find(nf, nf + w, true) != nf + w;
    if (q.granularity == Granularity::tile) {
      for (int64_t t0 = 0; t0 < w; t0 += q.block) {
        const int64_t tw = std::min(q.block, w - t0);
        const float a = *std::max_element(m + t0, m + t0 + tw);
        const bool tile_nf = std::find(nf + t0, nf + t0 + tw, true) != nf + t0 + tw;
        std::fill(m + t0, m + t0 + tw, block_multiplier(q, a, tile_nf, c.tensor_scale));
      }
    } else {
      for (int64_t col = 0; col < w; col++) m[col] = block_multiplier(q, m[col], nf[col], c.tensor_scale);
    }
    for (int64_t r = r0; r < r0 + h; r++) {
      const int64_t i0 = r * c.cols + c0;
      quantize_run(q, c.f, c.y + i0, c.x + i0, w, m, 1, any, i0, k);
    }
  }
}

}  // namespace

TensorStats quantize_blocks_bf16(const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols) {
  const bool blocked = q.granularity == Granularity::block || q.granularity == Granularity::tile;
  MESHLM_CHECK(!blocked || q.block >= 1, "quantize_blocks: a block of at least one element");
  if (q.hadamard) {
    hadamard_bf16(q, y, x, rows, cols);
    x = y;
  }
  const ElemInfo& f = elem_info(q.elem);
  float amax = 0;
  bool any_nonfinite = false;
#pragma omp parallel for reduction(max : amax) reduction(|| : any_nonfinite) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    bool nf = false;
    amax = std::max(amax, run_amax(x + r * cols, cols, 1, nf));
    any_nonfinite = any_nonfinite || nf;
  }
  const float tensor_scale = q.scale == ScaleKind::e4m3 ? e4m3_tensor_scale(f, amax) : 1.0f;
  const Call c{q, f, y, x, rows, cols, tensor_scale};
  const float tensor_m = block_multiplier(q, amax, any_nonfinite, tensor_scale);
  Counts total;
#pragma omp parallel
  {
    Counts k;
    if (q.granularity == Granularity::tensor) {
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++)
        quantize_run(q, f, y + r * cols, x + r * cols, cols, &tensor_m, 0, any_nonfinite, r * cols, k);
    } else if (q.axis == 1 && q.granularity == Granularity::vector) {
      quantize_per_row(c, k);
    } else if (q.axis == 1 && q.granularity == Granularity::block) {
      quantize_row_blocks(c, k);
    } else {
      quantize_panels(c, k);
    }
#pragma omp critical
    {
      total.zero += k.zero, total.underflow += k.underflow, total.subnormal += k.subnormal, total.overflow += k.overflow;
    }
  }
  TensorStats s;
  s.n = rows * cols, s.amax = amax, s.zero = total.zero, s.underflow = total.underflow, s.subnormal = total.subnormal,
  s.overflow = total.overflow;
  return s;
}

}  // namespace meshlm::cpu
