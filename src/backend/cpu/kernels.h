// fp32 CPU kernels (OpenMP across cores, loops written for the compiler's AVX-512
// vectorizer). Contracts are those of backend.h. Every reduction has a fixed order that does
// not depend on the thread count, so a run is bit-reproducible (resume equals no resume).
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace meshlm::cpu {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                       const float* b, int64_t N, int64_t C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int64_t N, int64_t C);
// Attention needs a scratch of attention_scratch_floats(T) floats (two T x T matrices per thread).
inline int64_t attention_scratch_floats(int64_t T, int threads) { return int64_t(threads) * 2 * T * T; }
void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t NH, float* scratch);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int64_t B, int64_t T, int64_t C, int64_t NH, float* scratch);
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void residual_forward(float* out, const float* a, const float* b, int64_t n);
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C);
void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp);
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a);
double sum_squares(const float* x, int64_t n);
// dbias (OC) += column sums of dout (N, OC).
void bias_backward(float* dbias, const float* dout, int64_t N, int64_t OC);

}  // namespace meshlm::cpu
