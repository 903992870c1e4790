// The "cpu" backend: GEMMs through oneDNN (matmul primitives cached per shape, bias fused into
// the forward product), everything else through the OpenMP kernels of cpu/kernels.h. fp32,
// plus bf16 operands for gemm; the precision issue adds the rest. (oneDNN 2.6 has no fp16
// matmul on CPUs without AVX512-FP16, such as this project's machine.)
#include <omp.h>

#include <vector>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace meshlm {
namespace {

#define F_(p) static_cast<float*>(p)
#define CF_(p) static_cast<const float*>(p)

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool supports(Op op, DType dt) const override {
    return dt == DType::fp32 || (op == Op::gemm && dt == DType::bf16);  // bf16: oneDNN on AVX512-BF16
  }

  void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
            const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
            int64_t ldc) override {
    check(Op::gemm, dt);
    gemm_.run({dt, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, false}, A, B, C);
  }

  void matmul_forward(DType dt, void* out, const void* inp, const void* w, const void* bias,
                      int64_t N, int64_t C, int64_t OC, WeightLayout layout) override {
    check(Op::matmul, dt);
    const bool tb = layout == WeightLayout::out_in;  // W (OC, C): read transposed
    gemm_.run({dt, false, tb, N, OC, C, C, tb ? C : OC, OC, 1.0f, 0.0f, bias != nullptr}, inp, w,
              out, bias);
  }

  void matmul_backward(DType dt, void* dinp, void* dw, void* dbias, const void* dout,
                       const void* inp, const void* w, int64_t N, int64_t C, int64_t OC,
                       WeightLayout layout) override {
    check(Op::matmul, dt);
    const bool in_out = layout == WeightLayout::in_out;
    if (dinp)  // dinp (N, C) += dout (N, OC) @ W^T
      gemm_.run({dt, false, in_out, N, C, OC, OC, in_out ? OC : C, C, 1.0f, 1.0f, false}, dout, w,
                dinp);
    if (in_out)  // dW (C, OC) += inp^T (C, N) @ dout (N, OC)
      gemm_.run({dt, true, false, C, OC, N, C, OC, OC, 1.0f, 1.0f, false}, inp, dout, dw);
    else  // dW (OC, C) += dout^T (OC, N) @ inp (N, C)
      gemm_.run({dt, true, false, OC, C, N, OC, C, C, 1.0f, 1.0f, false}, dout, inp, dw);
    if (dbias) cpu::bias_backward(F_(dbias), CF_(dout), N, OC);
  }

  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                         const void* w, const void* b, int64_t N, int64_t C) override {
    check(Op::layernorm, dt);
    cpu::layernorm_forward(F_(out), F_(mean), F_(rstd), CF_(inp), CF_(w), CF_(b), N, C);
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout,
                          const void* inp, const void* w, const void* mean, const void* rstd,
                          int64_t N, int64_t C) override {
    check(Op::layernorm, dt);
    cpu::layernorm_backward(F_(dinp), F_(dw), F_(db), CF_(dout), CF_(inp), CF_(w), CF_(mean),
                            CF_(rstd), N, C);
  }
  void attention_forward(DType dt, void* out, void* lse, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    check(Op::attention, dt);
    cpu::attention_forward(F_(out), F_(lse), CF_(qkv), B, T, C, NH, attention_scratch(T));
  }
  void attention_backward(DType dt, void* dqkv, const void* dout, const void* qkv,
                          const void* out, const void* lse, int64_t B, int64_t T, int64_t C,
                          int64_t NH) override {
    check(Op::attention, dt);
    cpu::attention_backward(F_(dqkv), CF_(dout), CF_(qkv), CF_(out), CF_(lse), B, T, C, NH,
                            attention_scratch(T));
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) override {
    check(Op::gelu, dt);
    cpu::gelu_forward(F_(out), CF_(inp), n);
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) override {
    check(Op::gelu, dt);
    cpu::gelu_backward(F_(dinp), CF_(inp), CF_(dout), n);
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) override {
    check(Op::residual, dt);
    cpu::residual_forward(F_(out), CF_(a), CF_(b), n);
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                         const void* wpe, int64_t B, int64_t T, int64_t C) override {
    check(Op::embedding, dt);
    cpu::embedding_forward(F_(out), tokens, CF_(wte), CF_(wpe), B, T, C);
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                          const int32_t* tokens, int64_t B, int64_t T, int64_t C) override {
    check(Op::embedding, dt);
    cpu::embedding_backward(F_(dwte), F_(dwpe), CF_(dout), tokens, B, T, C);
  }
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) override {
    check(Op::crossentropy, dt);
    cpu::crossentropy_forward_backward(F_(losses), F_(logits), targets, dloss, N, V, Vp);
  }
  void adamw_update(DType dt, void* p, const void* g, void* m, void* v, int64_t n,
                    const AdamWArgs& args) override {
    check(Op::adamw, dt);
    cpu::adamw_update(F_(p), CF_(g), F_(m), F_(v), n, args);
  }
  double sum_squares(DType dt, const void* x, int64_t n) override {
    check(Op::sum_squares, dt);
    return cpu::sum_squares(CF_(x), n);
  }

 private:
  void check(Op op, DType dt) const {
    if (!supports(op, dt))
      throw Error(std::string("cpu backend: ") + op_name(op) + " does not support " + dtype_name(dt));
  }
  // The per-thread T x T work space of attention, owned by the backend (kernels never
  // allocate); grown on demand, kept for the next call.
  float* attention_scratch(int64_t T) {
    const size_t need = size_t(cpu::attention_scratch_floats(T, omp_get_max_threads()));
    if (attn_scratch_.size() < need) attn_scratch_.resize(need);
    return attn_scratch_.data();
  }
  OneDnnGemm gemm_;
  std::vector<float> attn_scratch_;
};

#undef F_
#undef CF_

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace meshlm
