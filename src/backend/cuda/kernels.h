// The CUDA kernels' launchers, one family per .cu file (elementwise, reduce, norm, embedding,
// crossentropy, attention), called by the backend (cuda_backend.cpp). Every launcher queues its
// work on `stream` and returns; pointers are device buffers; 16-bit buffers (bf16 or fp16, the
// `dt` argument) are read to fp32, computed in fp32 and rounded once when stored; gradients
// follow the += rule of backend/ops.inc. Plain C++ signatures: no CUDA syntax here.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/device_math.h"

namespace meshlm::cuda::k {

// ---- elementwise.cu ----
void convert(cudaStream_t s, DType to, void* dst, DType from, const void* src, int64_t n);
void convert_stochastic(cudaStream_t s, DType to, uint16_t* dst, const float* src, int64_t n, uint64_t base,
                        int64_t index0);
void round_to_format(cudaStream_t s, DType format, float* x, int64_t n);
void accumulate(cudaStream_t s, float* dst, const float* src, int64_t n);
void residual_forward(cudaStream_t s, DType dt, void* out, const void* a, const void* b, int64_t n);
void gelu_forward(cudaStream_t s, DType dt, void* out, const void* inp, int64_t n);
void gelu_backward(cudaStream_t s, DType dt, void* dinp, const void* inp, const void* dout, int64_t n);
void swiglu_forward(cudaStream_t s, DType dt, void* out, const void* gate, const void* up, int64_t n);
void swiglu_backward(cudaStream_t s, DType dt, void* dgate, void* dup, const void* dout, const void* gate,
                     const void* up, int64_t n);
void rope(cudaStream_t s, DType dt, void* x, const float* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS,
          float sign);
// AdamW over fp32 buffers; copy (n, `to`) gets the rounded parameters when not null.
void adamw(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n, const AdamWConsts& c, DType to,
           void* copy);
void adamw_fp16_storage(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n,
                        const AdamWConsts& c);

// ---- reduce.cu ----
// partials (kSumBlocks doubles): block sums of x (squares if `squares`) in a fixed order.
void sum_partials(cudaStream_t s, DType dt, const void* x, int64_t n, bool squares, double* partials);
// *amax_bits (device, zeroed by the caller) = bits of max |x| over the finite values.
void amax_bf16(cudaStream_t s, const uint16_t* x, int64_t n, uint32_t* amax_bits);
void fake_quantize_bf16(cudaStream_t s, DType format, uint16_t* y, const uint16_t* x, int64_t n, float scale,
                        uint32_t* amax_bits);

// ---- fp8.cu ----
// q (rows, cols), or its transpose (cols, rows) = fp8 codes of x (rows, cols) * scale; *amax_bits
// (if not null) as amax_bf16, without zeroing it first.
void quantize_fp8(cudaStream_t s, DType format, uint8_t* q, const uint16_t* x, int64_t rows, int64_t cols,
                  float scale, bool transpose, uint32_t* amax_bits);
// dst (rows, cols, bf16, dense) = the values of fp8 codes src (rows, cols; leading dimension ld).
void fp8_to_bf16(cudaStream_t s, DType format, uint16_t* dst, const uint8_t* src, int64_t rows, int64_t cols,
                 int64_t ld);

// ---- quantize.cu ----
// The device work space quantize_blocks needs (bytes) and its scale blocks.
struct QuantWork {
  int64_t blocks = 0;
  size_t hadamard_bytes = 0, bytes = 0;
};
QuantWork quantize_work(const QuantSpec& q, int64_t rows, int64_t cols);
// y (rows, cols) = x quantized per q and read back (ops.inc quantize_blocks); waits for the
// stream and returns the counts (overflow, zero, underflow, subnormal) and the finite amax.
void quantize_blocks(cudaStream_t s, const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols,
                     void* work, uint64_t* counts, float* amax);

// ---- norm.cu ----
// With b null: layernorm of a; else sum = a + b stored first and normalized (fused residual).
void layernorm_forward(cudaStream_t s, DType dt, void* sum, void* out, float* mean, float* rstd, const void* a,
                       const void* b, const void* w, const void* bias, int64_t N, int64_t C);
void layernorm_backward(cudaStream_t s, DType dt, void* dinp, float* dw, float* db, const void* dout,
                        const void* inp, const void* w, const float* mean, const float* rstd, int64_t N, int64_t C,
                        float* scratch);
void rmsnorm_forward(cudaStream_t s, DType dt, void* out, float* rstd, const void* inp, const void* w, int64_t N,
                     int64_t C, float eps);
void rmsnorm_backward(cudaStream_t s, DType dt, void* dinp, float* dw, const void* dout, const void* inp,
                      const void* w, const float* rstd, int64_t N, int64_t C, float* scratch);
// dbias (OC, fp32) += column sums of dout (N, OC).
void bias_backward(cudaStream_t s, DType dt, float* dbias, const void* dout, int64_t N, int64_t OC, float* scratch);

// ---- embedding.cu ----
void embedding_forward(cudaStream_t s, DType dt, void* out, const int32_t* tokens, const void* wte, const void* wpe,
                       int64_t B, int64_t T, int64_t C);
void embedding_backward(cudaStream_t s, DType dt, float* dwte, float* dwpe, const void* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C);

// ---- crossentropy.cu ----
void crossentropy_forward_backward(cudaStream_t s, DType dt, float* losses, void* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp);
void logsumexp_rows(cudaStream_t s, DType dt, float* lse, const void* logits, int64_t N, int64_t V, int64_t Vp);
void crossentropy_partials(cudaStream_t s, DType dt, float* sumexp, float* target_logit, int32_t* local_targets,
                           const float* lse, const float* row_max, const void* logits, const int32_t* targets,
                           int64_t N, int64_t v0, int64_t Vl);
void crossentropy_combine(cudaStream_t s, float* lse, float* losses, const float* row_max, const float* sumexp,
                          const float* target_logit, int64_t N);
void crossentropy_backward_given_lse(cudaStream_t s, DType dt, void* logits, const float* lse,
                                     const int32_t* targets, float dloss, int64_t N, int64_t V, int64_t Vp);

// ---- attention.cu ----
void attention_forward(cudaStream_t s, DType dt, void* out, float* lse, const void* q, const void* k, const void* v,
                       const AttentionShape& a);
void attention_decode(cudaStream_t s, DType dt, void* out, const void* q, const void* k, const void* v,
                      const AttentionShape& a, int64_t len);
void attention_backward(cudaStream_t s, DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q,
                        const void* k, const void* v, const void* out, const float* lse, const AttentionShape& a,
                        float* scratch);
// D (B, NH, T) = rowsum(dout * out): backward's first step.
void attention_delta(cudaStream_t s, DType dt, float* D, const void* dout, const void* out, const AttentionShape& a);

// ---- attention_tc.cu (tensor cores: 16-bit, launch.h tc_attention_fits) ----
void attention_tc_forward(cudaStream_t s, DType dt, void* out, float* lse, const void* q, const void* k,
                          const void* v, const AttentionShape& a);
// dq, dk, dv += the gradients, given D from attention_delta.
void attention_tc_backward(cudaStream_t s, DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q,
                           const void* k, const void* v, const float* lse, const float* D, const AttentionShape& a);

}  // namespace meshlm::cuda::k
