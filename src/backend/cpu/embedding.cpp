// Token + position embedding on CPU. Backward is a scatter-add into rows of dwte chosen by
// the tokens; to stay race-free and deterministic, threads split the C channels (each
// thread walks all positions in order for its own columns) instead of the positions.
#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const int32_t tok = tokens[b * T + t];  // < 0: not in this rank's vocabulary slice
      float* o = out + (b * T + t) * C;        // (C)
      for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
      if (tok >= 0) {
        const float* e = wte + int64_t(tok) * C;  // (C)
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] += e[c];
      }
      if (wpe) {
        const float* p = wpe + t * C;  // (C)
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] += p[c];
      }
    }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C) {
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++) {
        const float* d = dout + (b * T + t) * C;
        if (tokens[b * T + t] >= 0) {
          float* e = dwte + int64_t(tokens[b * T + t]) * C;
#pragma omp simd
          for (int64_t c = c0; c < c1; c++) e[c] += d[c];
        }
        if (dwpe) {
          float* p = dwpe + t * C;
#pragma omp simd
          for (int64_t c = c0; c < c1; c++) p[c] += d[c];
        }
      }
  }
}

}  // namespace meshlm::cpu
