// The "reference" backend: the naive kernels of reference/kernels.h behind the Backend
// interface, for fp32 and fp64 (conversions and statistics for every dtype). Slow on purpose;
// it is the meaning of each kernel. Tensors in host memory.
#include "backend/host_memory.h"
#include "backend/kernel_table.h"
#include "backend/reference/kernels.h"
#include "core/error.h"

namespace meshlm {
namespace {

template <class F>
void dispatch(DType dt, const char* what, F&& f) {
  if (dt == DType::fp32) return f(float{});
  if (dt == DType::fp64) return f(double{});
  throw Error(std::string("reference backend: ") + what + " does not support " + dtype_name(dt));
}

#define C_(T, p) static_cast<const T*>(p)
#define M_(T, p) static_cast<T*>(p)

struct ReferenceKernels : HostMemory {
  const char* name() const { return "reference"; }
  std::string describe() const { return "reference (naive loops, fp32 and fp64)"; }
  bool supports(Op op, DType dt) const {
    if (op == Op::memory || op == Op::convert || op == Op::stats) return true;
    if (op == Op::quantize) return dt == DType::bf16;
    return dt == DType::fp32 || dt == DType::fp64;
  }

  void convert(DType to, void* dst, DType from, const void* src, int64_t n) {
    reference::convert(to, dst, from, src, n);
  }
  void convert_stochastic(DType to, void* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                          int64_t index0) {
    MESHLM_CHECK(to == DType::bf16 || to == DType::fp16, "convert_stochastic: to bf16 or fp16");
    reference::convert_stochastic(to, M_(uint16_t, dst), src, n, seed, stream, index0);
  }
  void round_to_format(DType format, float* x, int64_t n) { reference::round_to_format(format, x, n); }
  void accumulate(DType dt, void* dst, const void* src, int64_t n) {
    dispatch(dt, "accumulate", [&](auto t) {
      using T = decltype(t);
      reference::accumulate<T>(M_(T, dst), C_(T, src), n);
    });
  }
  double sum(DType dt, const void* x, int64_t n) {
    double r = 0;
    dispatch(dt, "sum", [&](auto t) {
      using T = decltype(t);
      r = reference::sum<T>(C_(T, x), n);
    });
    return r;
  }
  TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n) {
    return reference::tensor_stats(format, stored, x, n);
  }
  float amax(DType dt, const void* x, int64_t n) {
    MESHLM_CHECK(dt == DType::bf16, "reference backend: amax runs on bf16");
    return reference::amax_bf16(C_(uint16_t, x), n);
  }
  float fake_quantize(DType format, void* y, const void* x, int64_t n, float scale) {
    return reference::fake_quantize_bf16(format, M_(uint16_t, y), C_(uint16_t, x), n, scale);
  }
  void quantize_fp8(DType format, void* q, const void* x, int64_t rows, int64_t cols, float scale, bool transpose,
                    float* amax) {
    const float a = reference::quantize_fp8_bf16(format, M_(uint8_t, q), C_(uint16_t, x), rows, cols, scale, transpose);
    if (amax) *amax = std::max(*amax, a);
  }
  void gemm_fp8(DType fa, DType fb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
                const void* B, int64_t ldb, float beta, DType c, void* C, int64_t ldc, const void* bias) {
    reference::gemm_fp8(fa, fb, M, N, K, alpha, C_(uint8_t, A), lda, C_(uint8_t, B), ldb, beta, c, C, ldc, bias);
  }
  TensorStats quantize_blocks(const QuantSpec& q, void* y, const void* x, int64_t rows, int64_t cols) {
    return reference::quantize_blocks_bf16(q, M_(uint16_t, y), C_(uint16_t, x), rows, cols);
  }
  void crossentropy_partials(DType dt, void* sumexp, void* target_logit, int32_t* local_targets, const void* lse,
                             const void* row_max, const void* logits, const int32_t* targets, int64_t N, int64_t v0,
                             int64_t Vl) {
    dispatch(dt, "crossentropy", [&](auto t) {
      using T = decltype(t);
      reference::crossentropy_partials<T>(dt, M_(T, sumexp), M_(T, target_logit), local_targets, C_(T, lse),
                                          C_(T, row_max), C_(T, logits), targets, N, v0, Vl);
    });
  }
  void crossentropy_combine(DType dt, void* lse, void* losses, const void* row_max, const void* sumexp,
                            const void* target_logit, int64_t N) {
    dispatch(dt, "crossentropy", [&](auto t) {
      using T = decltype(t);
      reference::crossentropy_combine<T>(M_(T, lse), M_(T, losses), C_(T, row_max), C_(T, sumexp),
                                         C_(T, target_logit), N);
    });
  }
  void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a) {
    reference::adamw_update_fp16_storage(p, g, m, v, n, a);
  }

  void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
            const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
            int64_t ldc) {
    dispatch(dt, "gemm", [&](auto t) {
      using T = decltype(t);
      reference::gemm<T>(ta, tb, M, N, K, T(alpha), C_(T, A), lda, C_(T, B), ldb, T(beta),
                         M_(T, C), ldc);
    });
  }
  void matmul_forward(DType dt, void* out, const void* inp, const void* w, const void* bias,
                      int64_t N, int64_t C, int64_t OC, WeightLayout layout) {
    dispatch(dt, "matmul", [&](auto t) {
      using T = decltype(t);
      reference::matmul_forward<T>(M_(T, out), C_(T, inp), C_(T, w), C_(T, bias), N, C, OC, layout);
    });
  }
  void matmul_backward(DType dt, void* dinp, void* dw, void* dbias, const void* dout,
                       const void* inp, const void* w, int64_t N, int64_t C, int64_t OC,
                       WeightLayout layout) {
    dispatch(dt, "matmul", [&](auto t) {
      using T = decltype(t);
      reference::matmul_backward<T>(M_(T, dinp), M_(T, dw), M_(T, dbias), C_(T, dout),
                                    C_(T, inp), C_(T, w), N, C, OC, layout);
    });
  }
  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                         const void* w, const void* b, int64_t N, int64_t C) {
    dispatch(dt, "layernorm", [&](auto t) {
      using T = decltype(t);
      reference::layernorm_forward<T>(M_(T, out), M_(T, mean), M_(T, rstd), C_(T, inp),
                                      C_(T, w), C_(T, b), N, C);
    });
  }
  // The definition: the two calls.
  void residual_layernorm_forward(DType dt, void* sum, void* out, void* mean, void* rstd, const void* a,
                                  const void* b, const void* w, const void* bias, int64_t N, int64_t C) {
    residual_forward(dt, sum, a, b, N * C);
    layernorm_forward(dt, out, mean, rstd, sum, w, bias, N, C);
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout,
                          const void* inp, const void* w, const void* mean, const void* rstd,
                          int64_t N, int64_t C) {
    dispatch(dt, "layernorm", [&](auto t) {
      using T = decltype(t);
      reference::layernorm_backward<T>(M_(T, dinp), M_(T, dw), M_(T, db), C_(T, dout),
                                       C_(T, inp), C_(T, w), C_(T, mean), C_(T, rstd), N, C);
    });
  }
  void attention_forward(DType dt, void* out, void* lse, const void* q, const void* k, const void* v,
                         const AttentionShape& a) {
    dispatch(dt, "attention", [&](auto t) {
      using T = decltype(t);
      reference::attention_forward<T>(M_(T, out), M_(T, lse), C_(T, q), C_(T, k), C_(T, v), a);
    });
  }
  void attention_decode(DType dt, void* out, const void* q, const void* k, const void* v, const AttentionShape& a,
                        int64_t len) {
    dispatch(dt, "attention", [&](auto t) {
      using T = decltype(t);
      reference::attention_decode<T>(M_(T, out), C_(T, q), C_(T, k), C_(T, v), a, len);
    });
  }
  void attention_backward(DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                          const void* v, const void* out, const void* lse, const AttentionShape& a) {
    dispatch(dt, "attention", [&](auto t) {
      using T = decltype(t);
      reference::attention_backward<T>(M_(T, dq), M_(T, dk), M_(T, dv), C_(T, dout), C_(T, q), C_(T, k), C_(T, v),
                                       C_(T, out), C_(T, lse), a);
    });
  }
  void rmsnorm_forward(DType dt, void* out, void* rstd, const void* inp, const void* w, int64_t N, int64_t C,
                       float eps) {
    dispatch(dt, "rmsnorm", [&](auto t) {
      using T = decltype(t);
      reference::rmsnorm_forward<T>(M_(T, out), M_(T, rstd), C_(T, inp), C_(T, w), N, C, T(eps));
    });
  }
  void rmsnorm_backward(DType dt, void* dinp, void* dw, const void* dout, const void* inp, const void* w,
                        const void* rstd, int64_t N, int64_t C) {
    dispatch(dt, "rmsnorm", [&](auto t) {
      using T = decltype(t);
      reference::rmsnorm_backward<T>(M_(T, dinp), M_(T, dw), C_(T, dout), C_(T, inp), C_(T, w), C_(T, rstd), N, C);
    });
  }
  void rope_forward(DType dt, void* x, const void* cos_sin, int64_t B, int64_t T_, int64_t H, int64_t HS) {
    dispatch(dt, "rope", [&](auto t) {
      using T = decltype(t);
      reference::rope_rotate<T, T>(M_(T, x), C_(T, cos_sin), B, T_, H, HS, +1);
    });
  }
  void rope_backward(DType dt, void* dx, const void* cos_sin, int64_t B, int64_t T_, int64_t H, int64_t HS) {
    dispatch(dt, "rope", [&](auto t) {
      using T = decltype(t);
      reference::rope_rotate<T, T>(M_(T, dx), C_(T, cos_sin), B, T_, H, HS, -1);
    });
  }
  void swiglu_forward(DType dt, void* out, const void* gate, const void* up, int64_t n) {
    dispatch(dt, "swiglu", [&](auto t) {
      using T = decltype(t);
      reference::swiglu_forward<T>(M_(T, out), C_(T, gate), C_(T, up), n);
    });
  }
  void swiglu_backward(DType dt, void* dgate, void* dup, const void* dout, const void* gate, const void* up,
                       int64_t n) {
    dispatch(dt, "swiglu", [&](auto t) {
      using T = decltype(t);
      reference::swiglu_backward<T>(M_(T, dgate), M_(T, dup), C_(T, dout), C_(T, gate), C_(T, up), n);
    });
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) {
    dispatch(dt, "gelu", [&](auto t) {
      using T = decltype(t);
      reference::gelu_forward<T>(M_(T, out), C_(T, inp), n);
    });
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) {
    dispatch(dt, "gelu", [&](auto t) {
      using T = decltype(t);
      reference::gelu_backward<T>(M_(T, dinp), C_(T, inp), C_(T, dout), n);
    });
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) {
    dispatch(dt, "residual", [&](auto t) {
      using T = decltype(t);
      reference::residual_forward<T>(M_(T, out), C_(T, a), C_(T, b), n);
    });
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                         const void* wpe, int64_t B, int64_t T_, int64_t C) {
    dispatch(dt, "embedding", [&](auto t) {
      using T = decltype(t);
      reference::embedding_forward<T>(M_(T, out), tokens, C_(T, wte), C_(T, wpe), B, T_, C);
    });
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                          const int32_t* tokens, int64_t B, int64_t T_, int64_t C) {
    dispatch(dt, "embedding", [&](auto t) {
      using T = decltype(t);
      reference::embedding_backward<T>(M_(T, dwte), M_(T, dwpe), C_(T, dout), tokens, B, T_, C);
    });
  }
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) {
    dispatch(dt, "crossentropy", [&](auto t) {
      using T = decltype(t);
      reference::crossentropy_forward_backward<T>(M_(T, losses), M_(T, logits), targets, T(dloss),
                                                  N, V, Vp);
    });
  }
  void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V,
                      int64_t Vp) {
    dispatch(dt, "crossentropy", [&](auto t) {
      using T = decltype(t);
      reference::logsumexp_rows<T>(M_(T, lse), C_(T, logits), N, V, Vp);
    });
  }
  void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse, const int32_t* targets,
                                       float dloss, int64_t N, int64_t V, int64_t Vp) {
    dispatch(dt, "crossentropy", [&](auto t) {
      using T = decltype(t);
      reference::crossentropy_backward_given_lse<T>(M_(T, logits), C_(T, lse), targets, T(dloss), N, V, Vp);
    });
  }
  void adamw_update(DType dt, void* p, const void* g, void* m, void* v, int64_t n,
                    const AdamWArgs& args) {
    dispatch(dt, "adamw", [&](auto t) {
      using T = decltype(t);
      reference::adamw_update<T>(M_(T, p), C_(T, g), M_(T, m), M_(T, v), n, args);
    });
  }
  // The definition: the update, then the conversion.
  void adamw_update_round(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWArgs& args,
                          DType to, void* copy) {
    MESHLM_CHECK(dt == DType::fp32 && (to == DType::bf16 || to == DType::fp16),
                 "adamw_update_round: fp32 parameters, a bf16 or fp16 copy");
    adamw_update(dt, p, g, m, v, n, args);
    convert(to, copy, DType::fp32, p, n);
  }
  double sum_squares(DType dt, const void* x, int64_t n) {
    double r = 0;
    dispatch(dt, "sum_squares", [&](auto t) {
      using T = decltype(t);
      r = reference::sum_squares<T>(C_(T, x), n);
    });
    return r;
  }
};

#undef C_
#undef M_

}  // namespace

std::unique_ptr<Backend> make_reference_backend() { return std::make_unique<KernelTable<ReferenceKernels>>(); }

}  // namespace meshlm
