// The row-vector pieces of the vocabulary-parallel cross-entropy (ops.inc:
// crossentropy_partials, crossentropy_combine) on the cpu backend. N values per call, so they
// run on one thread in index order. This file does not include core/vecmath.h on purpose: its
// exp and log stay glibc's scalar functions (0.5 ulp), never the vector ones.
#include <cmath>
#include <cstdint>

#include "core/dtype.h"

namespace meshlm::cpu {

void crossentropy_partials(DType dt, float* sumexp, float* target_logit, int32_t* local_targets, const float* lse,
                           const float* row_max, const void* logits, const int32_t* targets, int64_t N, int64_t v0,
                           int64_t Vl) {
  const size_t esz = dtype_size(dt);
  for (int64_t n = 0; n < N; n++) {
    sumexp[n] = std::isfinite(lse[n]) ? std::exp(lse[n] - row_max[n]) : 0.0f;
    const int64_t t = targets[n] - v0;
    local_targets[n] = t >= 0 && t < Vl ? int32_t(t) : -1;
    float x = 0.0f;
    if (local_targets[n] >= 0) convert_to_f32(dt, &x, static_cast<const char*>(logits) + size_t(n * Vl + t) * esz, 1);
    target_logit[n] = x;
  }
}

void crossentropy_combine(float* lse, float* losses, const float* row_max, const float* sumexp,
                          const float* target_logit, int64_t N) {
  for (int64_t n = 0; n < N; n++) {
    lse[n] = row_max[n] + std::log(sumexp[n]);
    losses[n] = lse[n] - target_logit[n];
  }
}

}  // namespace meshlm::cpu
