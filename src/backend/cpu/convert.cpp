// Conversions and small element-wise utilities on the cpu backend: dtype conversion (RNE,
// stochastic), in-place rounding to a format, accumulation, the in-order sum of a batch's
// losses and the numerics report's statistics. Conversions are element-wise, so how they are
// split over threads never changes a bit.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "core/lowp.h"
#include "core/rng.h"

namespace meshlm::cpu {

namespace {
constexpr int64_t kChunk = 1 << 16;  // elements per task of the parallel conversions
}  // namespace

void convert(DType to, void* dst, DType from, const void* src, int64_t n) {
  MESHLM_CHECK(to == DType::fp32 || from == DType::fp32,
               std::string("cpu backend: convert ") + dtype_name(from) + " -> " + dtype_name(to) +
                   " goes through fp32 (one side must be fp32)");
  if (to == from) {
    std::copy_n(static_cast<const char*>(src), size_t(n) * dtype_size(to), static_cast<char*>(dst));
    return;
  }
  const size_t dsz = dtype_size(to), ssz = dtype_size(from);
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const size_t m = size_t(std::min(kChunk, n - i0));
    char* d = static_cast<char*>(dst) + size_t(i0) * dsz;
    const char* s = static_cast<const char*>(src) + size_t(i0) * ssz;
    if (from == DType::fp32) convert_from_f32(to, d, reinterpret_cast<const float*>(s), m);
    else convert_to_f32(from, reinterpret_cast<float*>(d), s, m);
  }
}

void convert_stochastic(DType to, uint16_t* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                        int64_t index0) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)  // bits keyed by (seed, stream, index): the same on any layout
    dst[i] = float_to_bits_stochastic(to, src[i], random_u32(seed, stream, uint64_t(index0 + i)));
}

void round_to_format(DType format, float* x, int64_t n) {
  MESHLM_CHECK(format == DType::fp16 || format == DType::bf16, "round_to_format: bf16 or fp16");
  if (format == DType::fp16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = lowp::fp16_to_f32(lowp::f32_to_fp16(x[i]));
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = lowp::bf16_to_f32(lowp::f32_to_bf16(x[i]));
  }
}

void accumulate(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

double sum(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += double(x[i]);  // index order: the same bits everywhere
  return s;
}

TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n) {
  const FormatRange r = format_range(format);
  const double max_finite = r.max_finite, min_normal = r.min_normal, min_sub = r.min_subnormal;
  TensorStats s;
  s.n = n;
  constexpr int64_t kBlock = 4096;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  const size_t esz = dtype_size(stored);
  int64_t zero = 0, under = 0, sub = 0, over = 0;
  double amax = 0;
#pragma omp parallel for schedule(static) reduction(+ : zero, under, sub, over) reduction(max : amax)
  for (int64_t b = 0; b < nblocks; b++) {
    const int64_t i0 = b * kBlock, m = std::min(kBlock, n - i0);
    float buf[kBlock];
    if (stored == DType::fp64) {
      for (int64_t i = 0; i < m; i++) buf[i] = float(static_cast<const double*>(x)[i0 + i]);
    } else {
      convert_to_f32(stored, buf, static_cast<const char*>(x) + size_t(i0) * esz, size_t(m));
    }
    for (int64_t i = 0; i < m; i++) {
      const double a = std::fabs(double(buf[i]));
      if (!std::isfinite(a) || a > max_finite) {
        over++;
        continue;
      }
      amax = std::max(amax, a);
      if (a == 0) zero++;
      else if (a < 0.5 * min_sub) under++;
      else if (a < min_normal) sub++;
    }
  }
  s.zero = zero;
  s.underflow = under;
  s.subnormal = sub;
  s.overflow = over;
  s.amax = amax;
  return s;
}

}  // namespace meshlm::cpu
