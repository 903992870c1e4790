// The reference of quantize_blocks (ops.inc): every step spelled out on an fp32 copy, elements
// rounded by searching the format's table of values (the definition), so the fast kernel's bit
// arithmetic (core/formats.h round_to_elem) is checked against something independent of it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/reference/kernels.h"
#include "core/error.h"

namespace meshlm::reference {

float round_elem_by_table(Elem e, float v) {
  const ElemInfo& f = elem_info(e);
  if (!std::isfinite(v)) return v;
  const float a = std::min(std::fabs(v), f.max_finite);
  float best = 0;
  int best_code = 0;
  for (int code = 0; code < 1 << (f.bits - 1); code++) {  // the non-negative codes
    const float val = elem_from_bits(e, uint8_t(code));
    if (!std::isfinite(val)) continue;
    const float d = std::fabs(val - a), db = std::fabs(best - a);
    if (d < db || (d == db && code % 2 == 0 && best_code % 2 == 1)) {
      best = val;
      best_code = code;
    }
  }
  return std::copysign(best, v);
}

namespace {

// The scale (block) each element (r, c) belongs to, and how many there are.
struct BlockMap {
  const QuantSpec& q;
  int64_t rows, cols;
  int64_t per_row() const { return (cols + q.block - 1) / q.block; }
  int64_t of(int64_t r, int64_t c) const {
    switch (q.granularity) {
      case Granularity::tensor: return 0;
      case Granularity::vector: return q.axis == 1 ? r : c;
      case Granularity::block: return q.axis == 1 ? r * per_row() + c / q.block : (r / q.block) * cols + c;
      case Granularity::tile: return (r / q.block) * per_row() + c / q.block;
    }
    return 0;
  }
  int64_t count() const { return of(rows - 1, cols - 1) + 1; }
};

void hadamard_along_axis(const QuantSpec& q, std::vector<float>& v, int64_t rows, int64_t cols) {
  const int64_t len = q.axis == 1 ? cols : rows;
  MESHLM_CHECK(len % 16 == 0, "quantize_blocks: the Hadamard transform needs a multiple of 16 along the axis");
  const uint16_t signs = hadamard_signs(q.hadamard_seed);
  for (int64_t r = 0; r < rows; r += (q.axis == 1 ? 1 : 16))
    for (int64_t c = 0; c < cols; c += (q.axis == 1 ? 16 : 1)) hadamard16(&v[size_t(r * cols + c)], q.axis == 1 ? 1 : cols, signs);
  for (float& x : v) x = bits_to_float(DType::bf16, float_to_bits(DType::bf16, x));
}

}  // namespace

TensorStats quantize_blocks_bf16(const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols) {
  const ElemInfo& f = elem_info(q.elem);
  const int64_t n = rows * cols;
  std::vector<float> v(static_cast<size_t>(n));  // (rows, cols)
  for (int64_t i = 0; i < n; i++) v[size_t(i)] = bits_to_float(DType::bf16, x[i]);
  if (q.hadamard) hadamard_along_axis(q, v, rows, cols);
  const BlockMap map{q, rows, cols};
  std::vector<float> amax(size_t(map.count()), 0.0f);
  std::vector<char> nonfinite(amax.size(), 0);
  TensorStats s;
  s.n = n;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const float a = std::fabs(v[size_t(r * cols + c)]);
      const size_t b = size_t(map.of(r, c));
      if (std::isfinite(a)) amax[b] = std::max(amax[b], a), s.amax = std::max(s.amax, double(a));
      else nonfinite[b] = 1;
    }
  const float tensor_scale = q.scale == ScaleKind::e4m3 ? e4m3_tensor_scale(f, float(s.amax)) : 1.0f;
  std::vector<float> m(amax.size());
  for (size_t b = 0; b < m.size(); b++) m[b] = block_multiplier(q, amax[b], nonfinite[b] != 0, tensor_scale);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const int64_t i = r * cols + c;
      const float xv = v[size_t(i)], mb = m[size_t(map.of(r, c))];
      float out;
      if (!std::isfinite(xv)) {
        s.overflow++;
        out = std::isnan(mb) ? NAN : xv;
      } else if (std::isnan(mb)) {
        out = NAN;
      } else {
        const float t = xv * mb;
        if (std::fabs(t) > saturation_limit(q, f)) s.overflow++;
        const float e = q.stochastic ? round_to_elem_stochastic(f, t, random_u32(q.seed, q.stream, uint64_t(i)))
                                     : round_elem_by_table(q.elem, t);
        out = dequantize(e, mb);
        if (xv == 0) s.zero++;
        else if (out == 0) s.underflow++;
        if (e != 0 && std::fabs(e) < f.min_normal) s.subnormal++;
      }
      y[i] = float_to_bits(DType::bf16, out);
    }
  return s;
}

}  // namespace meshlm::reference
