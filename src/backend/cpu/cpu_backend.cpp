// The "cpu" backend: GEMMs through oneDNN (matmul primitives cached per shape, bias fused into
// the forward product), everything else through the OpenMP kernels of cpu/kernels.h. fp32, and
// 16-bit storage (bf16, fp16) for every op but adamw and sum_squares (which run on the fp32
// master weights and gradients). bf16 products run in oneDNN on bf16 operands (AVX512-BF16 or
// AMX) with fp32 accumulation; oneDNN 2.6 has no fp16 matmul on CPUs without AVX512-FP16 (such
// as this project's machine), so fp16 operands are converted to fp32 and multiplied there.
#include <omp.h>

#include <vector>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "core/lowp.h"

namespace meshlm {
namespace {

#define F_(p) static_cast<float*>(p)
#define CF_(p) static_cast<const float*>(p)
#define H_(p) static_cast<uint16_t*>(p)
#define CH_(p) static_cast<const uint16_t*>(p)

bool is16(DType dt) { return dt == DType::bf16 || dt == DType::fp16; }

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool supports(Op op, DType dt) const override {
    if (dt == DType::fp32) return true;
    if (op == Op::gemm) return dt == DType::bf16;
    return is16(dt) && op != Op::adamw && op != Op::sum_squares;
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
    GemmDesc d{DType::fp32, false, tb, N, OC, C, C, tb ? C : OC, OC, 1.0f, 0.0f, bias != nullptr};
    if (dt == DType::fp16) {  // convert, multiply in fp32, round the result once
      float* f = conv_scratch(N * C + C * OC + OC + N * OC);
      float *wf = f + N * C, *bf = wf + C * OC, *of = bf + OC;
      convert_to_f32(dt, f, inp, size_t(N * C));
      convert_to_f32(dt, wf, w, size_t(C * OC));
      if (bias) convert_to_f32(dt, bf, bias, size_t(OC));
      gemm_.run(d, f, wf, of, bias ? bf : nullptr);
      convert_from_f32(dt, out, of, size_t(N * OC));
      return;
    }
    d.ab_dtype = d.c_dtype = d.bias_dtype = dt;
    gemm_.run(d, inp, w, out, bias);
  }

  void matmul_backward(DType dt, void* dinp, void* dw, void* dbias, const void* dout,
                       const void* inp, const void* w, int64_t N, int64_t C, int64_t OC,
                       WeightLayout layout) override {
    check(Op::matmul, dt);
    const bool in_out = layout == WeightLayout::in_out;
    GemmDesc d_inp{dt, false, in_out, N, C, OC, OC, in_out ? OC : C, C, 1.0f, 1.0f, false};
    GemmDesc d_w = in_out ? GemmDesc{dt, true, false, C, OC, N, C, OC, OC, 1.0f, 1.0f, false}
                          : GemmDesc{dt, true, false, OC, C, N, OC, C, C, 1.0f, 1.0f, false};
    if (dt == DType::fp16) {  // convert, multiply in fp32, add into dinp rounding once
      float* f = conv_scratch(N * OC + C * OC + N * C + N * C);
      float *wf = f + N * OC, *xf = wf + C * OC, *dxf = xf + N * C;
      convert_to_f32(dt, f, dout, size_t(N * OC));
      convert_to_f32(dt, wf, w, size_t(C * OC));
      convert_to_f32(dt, xf, inp, size_t(N * C));
      d_inp.ab_dtype = d_w.ab_dtype = DType::fp32;
      if (dinp) {
        d_inp.beta = 0.0f;
        gemm_.run(d_inp, f, wf, dxf);
        lowp::add_from_f32(dt, H_(dinp), dxf, N * C);
      }
      if (in_out) gemm_.run(d_w, xf, f, dw);
      else gemm_.run(d_w, f, xf, dw);
      if (dbias) cpu::bias_backward(F_(dbias), f, N, OC);
      return;
    }
    if (dinp) {  // dinp (N, C) += dout (N, OC) @ W^T
      d_inp.c_dtype = dt;
      gemm_.run(d_inp, dout, w, dinp);
    }
    if (in_out)  // dW (C, OC) += inp^T (C, N) @ dout (N, OC); fp32 for any dt
      gemm_.run(d_w, inp, dout, dw);
    else  // dW (OC, C) += dout^T (OC, N) @ inp (N, C)
      gemm_.run(d_w, dout, inp, dw);
    if (dbias) {
      if (dt == DType::fp32) cpu::bias_backward(F_(dbias), CF_(dout), N, OC);
      else cpu::lowp16::bias_backward(dt, F_(dbias), CH_(dout), N, OC);
    }
  }

  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                         const void* w, const void* b, int64_t N, int64_t C) override {
    check(Op::layernorm, dt);
    if (is16(dt))
      return cpu::lowp16::layernorm_forward(dt, H_(out), F_(mean), F_(rstd), CH_(inp), CH_(w),
                                            CH_(b), N, C, scratch(Op::layernorm, 0, 0, C, 0, 0));
    cpu::layernorm_forward(F_(out), F_(mean), F_(rstd), CF_(inp), CF_(w), CF_(b), N, C);
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout,
                          const void* inp, const void* w, const void* mean, const void* rstd,
                          int64_t N, int64_t C) override {
    check(Op::layernorm, dt);
    if (is16(dt))
      return cpu::lowp16::layernorm_backward(dt, H_(dinp), F_(dw), F_(db), CH_(dout), CH_(inp),
                                             CH_(w), CF_(mean), CF_(rstd), N, C,
                                             scratch(Op::layernorm, 0, 0, C, 0, 0));
    cpu::layernorm_backward(F_(dinp), F_(dw), F_(db), CF_(dout), CF_(inp), CF_(w), CF_(mean),
                            CF_(rstd), N, C);
  }
  void attention_forward(DType dt, void* out, void* lse, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    check(Op::attention, dt);
    if (is16(dt))
      return cpu::lowp16::attention_forward(dt, H_(out), F_(lse), CH_(qkv), B, T, C, NH,
                                            scratch(Op::attention, B, T, C, NH, 0));
    cpu::attention_forward(F_(out), F_(lse), CF_(qkv), B, T, C, NH, attention_scratch(T));
  }
  void attention_backward(DType dt, void* dqkv, const void* dout, const void* qkv,
                          const void* out, const void* lse, int64_t B, int64_t T, int64_t C,
                          int64_t NH) override {
    check(Op::attention, dt);
    if (is16(dt))
      return cpu::lowp16::attention_backward(dt, H_(dqkv), CH_(dout), CH_(qkv), CH_(out), CF_(lse),
                                             B, T, C, NH, scratch(Op::attention, B, T, C, NH, 0));
    cpu::attention_backward(F_(dqkv), CF_(dout), CF_(qkv), CF_(out), CF_(lse), B, T, C, NH,
                            attention_scratch(T));
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) override {
    check(Op::gelu, dt);
    if (is16(dt)) return cpu::lowp16::gelu_forward(dt, H_(out), CH_(inp), n);
    cpu::gelu_forward(F_(out), CF_(inp), n);
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) override {
    check(Op::gelu, dt);
    if (is16(dt)) return cpu::lowp16::gelu_backward(dt, H_(dinp), CH_(inp), CH_(dout), n);
    cpu::gelu_backward(F_(dinp), CF_(inp), CF_(dout), n);
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) override {
    check(Op::residual, dt);
    if (is16(dt)) return cpu::lowp16::residual_forward(dt, H_(out), CH_(a), CH_(b), n);
    cpu::residual_forward(F_(out), CF_(a), CF_(b), n);
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                         const void* wpe, int64_t B, int64_t T, int64_t C) override {
    check(Op::embedding, dt);
    if (is16(dt))
      return cpu::lowp16::embedding_forward(dt, H_(out), tokens, CH_(wte), CH_(wpe), B, T, C,
                                            scratch(Op::embedding, B, T, C, 0, 0));
    cpu::embedding_forward(F_(out), tokens, CF_(wte), CF_(wpe), B, T, C);
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                          const int32_t* tokens, int64_t B, int64_t T, int64_t C) override {
    check(Op::embedding, dt);
    if (is16(dt)) return cpu::lowp16::embedding_backward(dt, F_(dwte), F_(dwpe), CH_(dout), tokens, B, T, C);
    cpu::embedding_backward(F_(dwte), F_(dwpe), CF_(dout), tokens, B, T, C);
  }
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) override {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::crossentropy_forward_backward(dt, F_(losses), H_(logits), targets, dloss,
                                                        N, V, Vp, scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::crossentropy_forward_backward(F_(losses), F_(logits), targets, dloss, N, V, Vp);
  }
  void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V,
                      int64_t Vp) override {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::logsumexp_rows(dt, F_(lse), CH_(logits), N, V, Vp,
                                         scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::logsumexp_rows(F_(lse), CF_(logits), N, V, Vp);
  }
  void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse, const int32_t* targets,
                                       float dloss, int64_t N, int64_t V, int64_t Vp) override {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::crossentropy_backward_given_lse(dt, H_(logits), CF_(lse), targets, dloss, N, V, Vp,
                                                          scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::crossentropy_backward_given_lse(F_(logits), CF_(lse), targets, dloss, N, V, Vp);
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
  // Work space of the 16-bit kernels (per-thread rows, converted heads) and of the fp16
  // products (operands converted to fp32); same ownership rule as attention's.
  float* scratch(Op op, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t Vp) {
    return conv_scratch(cpu::lowp16::scratch_floats(op, B, T, C, NH, Vp));
  }
  float* conv_scratch(int64_t floats) {
    if (int64_t(conv_scratch_.size()) < floats) conv_scratch_.resize(size_t(floats));
    return conv_scratch_.data();
  }
  OneDnnGemm gemm_;
  std::vector<float> attn_scratch_, conv_scratch_;
};

#undef F_
#undef CF_
#undef H_
#undef CH_

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace meshlm
