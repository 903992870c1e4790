// The "cpu" backend: GEMMs through oneDNN (matmul primitives cached per shape, bias fused into
// the forward product), everything else through the OpenMP kernels of cpu/kernels.h; tensors in
// host memory (HostMemory). fp32, and 16-bit storage (bf16, fp16) for every op but adamw and
// sum_squares (which run on the fp32 master weights and gradients). CpuKernels is the
// per-dtype dispatch of each op of ops.inc; KernelTable makes it a Backend. bf16 products run in oneDNN on bf16 operands (AVX512-BF16 or
// AMX) with fp32 accumulation, attention's per-head products too (attention_bf16.cpp); oneDNN 2.6 has no fp16 matmul on CPUs without AVX512-FP16 (such
// as this project's machine), so fp16 operands are converted to fp32 and multiplied there.
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <memory>
#include <vector>

#include "backend/cpu/gemm_onednn.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "core/lowp.h"
#include "backend/host_memory.h"
#include "backend/kernel_table.h"
#include "backend/reference/kernels.h"

namespace meshlm {
namespace {

#define F_(p) static_cast<float*>(p)
#define CF_(p) static_cast<const float*>(p)
#define H_(p) static_cast<uint16_t*>(p)
#define CH_(p) static_cast<const uint16_t*>(p)

bool is16(DType dt) { return dt == DType::bf16 || dt == DType::fp16; }

struct CpuKernels : HostMemory {
  const char* name() const { return "cpu"; }
  std::string describe() const {
    const dnnl_version_t* v = dnnl_version();
    return "cpu (oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch) + " + OpenMP" +
           (gemm_.native_bf16() ? "" : "; bf16 products on fp32 copies: oneDNN has no bf16 kernel for this CPU") + ")";
  }
  bool supports(Op op, DType dt) const {
    if (op == Op::memory || op == Op::convert || op == Op::stats) return true;
    if (op == Op::quantize) return dt == DType::bf16;
    if (dt == DType::fp32) return true;
    if (op == Op::gemm) return dt == DType::bf16;
    return is16(dt) && op != Op::adamw && op != Op::sum_squares;
  }

  void convert(DType to, void* dst, DType from, const void* src, int64_t n) { cpu::convert(to, dst, from, src, n); }
  void convert_stochastic(DType to, void* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                          int64_t index0) {
    MESHLM_CHECK(is16(to), "convert_stochastic: to bf16 or fp16");
    cpu::convert_stochastic(to, H_(dst), src, n, seed, stream, index0);
  }
  void round_to_format(DType format, float* x, int64_t n) { cpu::round_to_format(format, x, n); }
  void accumulate(DType dt, void* dst, const void* src, int64_t n) {
    check(Op::residual, dt);
    MESHLM_CHECK(dt == DType::fp32, "cpu backend: accumulate runs on fp32 buffers");
    cpu::accumulate(F_(dst), CF_(src), n);
  }
  double sum(DType dt, const void* x, int64_t n) {
    MESHLM_CHECK(dt == DType::fp32, "cpu backend: sum runs on fp32 buffers");
    return cpu::sum(CF_(x), n);
  }
  TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n) {
    return cpu::tensor_stats(format, stored, x, n);
  }
  float amax(DType dt, const void* x, int64_t n) {
    check(Op::quantize, dt);
    return cpu::amax_bf16(CH_(x), n);
  }
  float fake_quantize(DType format, void* y, const void* x, int64_t n, float scale) {
    return cpu::fake_quantize_bf16(format, H_(y), CH_(x), n, scale);
  }
  TensorStats quantize_blocks(const QuantSpec& q, void* y, const void* x, int64_t rows, int64_t cols) {
    return cpu::quantize_blocks_bf16(q, H_(y), CH_(x), rows, cols);
  }

  void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
            const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
            int64_t ldc) {
    check(Op::gemm, dt);
    gemm_.run({dt, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, false}, A, B, C);
  }

  void quantize_fp8(DType format, void* q, const void* x, int64_t rows, int64_t cols, float scale, bool transpose,
                    float* amax) {
    const float a = cpu::quantize_fp8_bf16(format, static_cast<uint8_t*>(q), CH_(x), rows, cols, scale, transpose);
    if (amax) *amax = std::max(*amax, a);
  }
  // No fp8 arithmetic on a CPU: the codes widened to fp32 (exact), an fp32 product (the fp8
  // products are exact there too, the sums fp32), C rounded once when it is bf16.
  void gemm_fp8(DType fa, DType fb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
                const void* B, int64_t ldb, float beta, DType c, void* C, int64_t ldc, const void* bias) {
    MESHLM_CHECK(c == DType::fp32 || c == DType::bf16, "gemm_fp8: C is fp32 or bf16");
    MESHLM_CHECK(!(fa == DType::fp8_e5m2 && fb == DType::fp8_e5m2), "gemm_fp8: A and B both e5m2");
    if (M == 0 || N == 0) return;
    const bool f32 = c == DType::fp32;
    float* af = conv_scratch(M * K + N * K + (f32 ? 0 : M * N + N));  // A (M, K), B (N, K), C (M, N), bias (N)
    float *bf = af + M * K, *cf = f32 ? F_(C) : bf + N * K, *biasf = cf + M * N;
    cpu::fp8_to_f32(fa, af, static_cast<const uint8_t*>(A), M, K, lda);
    cpu::fp8_to_f32(fb, bf, static_cast<const uint8_t*>(B), N, K, ldb);
    const int64_t ldcf = f32 ? ldc : N;
    if (!f32 && beta != 0.0f)
      for (int64_t i = 0; i < M; i++) lowp::to_f32(DType::bf16, cf + i * N, CH_(C) + i * ldc, N);
    if (bias && !f32) lowp::to_f32(DType::bf16, biasf, CH_(bias), N);
    // The bias added after the product (oneDNN would scale it by alpha with the product).
    gemm_.run(GemmDesc{DType::fp32, false, true, M, N, K, K, K, ldcf, alpha, beta, false}, af, bf, cf);
    if (bias) {
      const float* b = f32 ? CF_(bias) : biasf;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) cf[i * ldcf + j] += b[j];
    }
    if (!f32)
      for (int64_t i = 0; i < M; i++) lowp::from_f32(DType::bf16, H_(C) + i * ldc, cf + i * N, N);
  }

  void matmul_forward(DType dt, void* out, const void* inp, const void* w, const void* bias,
                      int64_t N, int64_t C, int64_t OC, WeightLayout layout) {
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
                       WeightLayout layout) {
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
      if (dw && in_out) gemm_.run(d_w, xf, f, dw);
      else if (dw) gemm_.run(d_w, f, xf, dw);
      if (dbias) cpu::bias_backward(F_(dbias), f, N, OC);
      return;
    }
    if (dinp) {  // dinp (N, C) += dout (N, OC) @ W^T
      d_inp.c_dtype = dt;
      gemm_.run(d_inp, dout, w, dinp);
    }
    if (dw && in_out)  // dW (C, OC) += inp^T (C, N) @ dout (N, OC); fp32 for any dt
      gemm_.run(d_w, inp, dout, dw);
    else if (dw)  // dW (OC, C) += dout^T (OC, N) @ inp (N, C)
      gemm_.run(d_w, dout, inp, dw);
    if (dbias) {
      if (dt == DType::fp32) cpu::bias_backward(F_(dbias), CF_(dout), N, OC);
      else cpu::lowp16::bias_backward(dt, F_(dbias), CH_(dout), N, OC);
    }
  }

  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                         const void* w, const void* b, int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    if (is16(dt))
      return cpu::lowp16::layernorm_forward(dt, H_(out), F_(mean), F_(rstd), CH_(inp), CH_(w),
                                            CH_(b), N, C, scratch(Op::layernorm, 0, 0, C, 0, 0));
    cpu::layernorm_forward(F_(out), F_(mean), F_(rstd), CF_(inp), CF_(w), CF_(b), N, C);
  }
  void residual_layernorm_forward(DType dt, void* sum, void* out, void* mean, void* rstd, const void* a,
                                  const void* b, const void* w, const void* bias, int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    if (is16(dt))
      return cpu::lowp16::residual_layernorm_forward(dt, H_(sum), H_(out), F_(mean), F_(rstd), CH_(a), CH_(b),
                                                     CH_(w), CH_(bias), N, C, scratch(Op::layernorm, 0, 0, C, 0, 0));
    cpu::residual_layernorm_forward(F_(sum), F_(out), F_(mean), F_(rstd), CF_(a), CF_(b), CF_(w), CF_(bias), N, C);
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout,
                          const void* inp, const void* w, const void* mean, const void* rstd,
                          int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    if (is16(dt))
      return cpu::lowp16::layernorm_backward(dt, H_(dinp), F_(dw), F_(db), CH_(dout), CH_(inp),
                                             CH_(w), CF_(mean), CF_(rstd), N, C,
                                             scratch(Op::layernorm, 0, 0, C, 0, 0));
    cpu::layernorm_backward(F_(dinp), F_(dw), F_(db), CF_(dout), CF_(inp), CF_(w), CF_(mean),
                            CF_(rstd), N, C);
  }
  void attention_forward(DType dt, void* out, void* lse, const void* q, const void* k, const void* v,
                         const AttentionShape& a) {
    check(Op::attention, dt);
    if (bf16_products(dt))
      return cpu::bf16attn::attention_forward(H_(out), F_(lse), CH_(q), CH_(k), CH_(v), a, bf16_attention_scratch(a),
                                              thread_gemms());
    if (is16(dt))
      return cpu::lowp16::attention_forward(dt, H_(out), F_(lse), CH_(q), CH_(k), CH_(v), a,
                                            scratch(Op::attention, a.B, a.T, a.HS, 1, 0));
    cpu::attention_forward(F_(out), F_(lse), CF_(q), CF_(k), CF_(v), a, attention_scratch(a.T));
  }
  void attention_decode(DType dt, void* out, const void* q, const void* k, const void* v, const AttentionShape& a,
                        int64_t len) {
    check(Op::attention, dt);
    if (!is16(dt)) return cpu::attention_decode(F_(out), CF_(q), CF_(k), CF_(v), a, len);
    // 16-bit: the rows up-cast once (exact), fp32 arithmetic, the output rounded once.
    const int64_t nq = a.NH * a.HS, nkv = len * a.ldkv;
    std::vector<float> qf(static_cast<size_t>(nq)), kf(static_cast<size_t>(nkv)), vf(static_cast<size_t>(nkv)),
        of(static_cast<size_t>(nq));
    lowp::to_f32(dt, qf.data(), CH_(q), nq);
    lowp::to_f32(dt, kf.data(), CH_(k), nkv);
    lowp::to_f32(dt, vf.data(), CH_(v), nkv);
    cpu::attention_decode(of.data(), qf.data(), kf.data(), vf.data(), a, len);
    lowp::from_f32(dt, H_(out), of.data(), nq);
  }
  void attention_backward(DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                          const void* v, const void* out, const void* lse, const AttentionShape& a) {
    check(Op::attention, dt);
    if (bf16_products(dt))
      return cpu::bf16attn::attention_backward(H_(dq), H_(dk), H_(dv), CH_(dout), CH_(q), CH_(k), CH_(v), CH_(out),
                                               CF_(lse), a, bf16_attention_scratch(a), thread_gemms());
    if (is16(dt))
      return cpu::lowp16::attention_backward(dt, H_(dq), H_(dk), H_(dv), CH_(dout), CH_(q), CH_(k), CH_(v), CH_(out),
                                             CF_(lse), a, scratch(Op::attention, a.B, a.T, a.HS, 1, 0));
    cpu::attention_backward(F_(dq), F_(dk), F_(dv), CF_(dout), CF_(q), CF_(k), CF_(v), CF_(out), CF_(lse), a,
                            attention_scratch(a.T));
  }
  void rmsnorm_forward(DType dt, void* out, void* rstd, const void* inp, const void* w, int64_t N, int64_t C,
                       float eps) {
    check(Op::rmsnorm, dt);
    if (is16(dt))
      return cpu::lowp16::rmsnorm_forward(dt, H_(out), F_(rstd), CH_(inp), CH_(w), N, C, eps,
                                          scratch(Op::rmsnorm, 0, 0, C, 0, 0));
    cpu::rmsnorm_forward(F_(out), F_(rstd), CF_(inp), CF_(w), N, C, eps);
  }
  void rmsnorm_backward(DType dt, void* dinp, void* dw, const void* dout, const void* inp, const void* w,
                        const void* rstd, int64_t N, int64_t C) {
    check(Op::rmsnorm, dt);
    if (is16(dt))
      return cpu::lowp16::rmsnorm_backward(dt, H_(dinp), F_(dw), CH_(dout), CH_(inp), CH_(w), CF_(rstd), N, C,
                                           scratch(Op::rmsnorm, 0, 0, C, 0, 0));
    cpu::rmsnorm_backward(F_(dinp), F_(dw), CF_(dout), CF_(inp), CF_(w), CF_(rstd), N, C);
  }
  void rope_forward(DType dt, void* x, const void* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS) {
    rope(dt, x, cos_sin, B, T, H, HS, 1.0f);
  }
  void rope_backward(DType dt, void* dx, const void* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS) {
    rope(dt, dx, cos_sin, B, T, H, HS, -1.0f);
  }
  void swiglu_forward(DType dt, void* out, const void* gate, const void* up, int64_t n) {
    check(Op::swiglu, dt);
    if (is16(dt)) return cpu::lowp16::swiglu_forward(dt, H_(out), CH_(gate), CH_(up), n);
    cpu::swiglu_forward(F_(out), CF_(gate), CF_(up), n);
  }
  void swiglu_backward(DType dt, void* dgate, void* dup, const void* dout, const void* gate, const void* up,
                       int64_t n) {
    check(Op::swiglu, dt);
    if (is16(dt)) return cpu::lowp16::swiglu_backward(dt, H_(dgate), H_(dup), CH_(dout), CH_(gate), CH_(up), n);
    cpu::swiglu_backward(F_(dgate), F_(dup), CF_(dout), CF_(gate), CF_(up), n);
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) {
    check(Op::gelu, dt);
    if (is16(dt)) return cpu::lowp16::gelu_forward(dt, H_(out), CH_(inp), n);
    cpu::gelu_forward(F_(out), CF_(inp), n);
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) {
    check(Op::gelu, dt);
    if (is16(dt)) return cpu::lowp16::gelu_backward(dt, H_(dinp), CH_(inp), CH_(dout), n);
    cpu::gelu_backward(F_(dinp), CF_(inp), CF_(dout), n);
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) {
    check(Op::residual, dt);
    if (is16(dt)) return cpu::lowp16::residual_forward(dt, H_(out), CH_(a), CH_(b), n);
    cpu::residual_forward(F_(out), CF_(a), CF_(b), n);
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                         const void* wpe, int64_t B, int64_t T, int64_t C) {
    check(Op::embedding, dt);
    if (is16(dt))
      return cpu::lowp16::embedding_forward(dt, H_(out), tokens, CH_(wte), CH_(wpe), B, T, C,
                                            scratch(Op::embedding, B, T, C, 0, 0));
    cpu::embedding_forward(F_(out), tokens, CF_(wte), CF_(wpe), B, T, C);
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                          const int32_t* tokens, int64_t B, int64_t T, int64_t C) {
    check(Op::embedding, dt);
    if (is16(dt)) return cpu::lowp16::embedding_backward(dt, F_(dwte), F_(dwpe), CH_(dout), tokens, B, T, C);
    cpu::embedding_backward(F_(dwte), F_(dwpe), CF_(dout), tokens, B, T, C);
  }
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::crossentropy_forward_backward(dt, F_(losses), H_(logits), targets, dloss,
                                                        N, V, Vp, scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::crossentropy_forward_backward(F_(losses), F_(logits), targets, dloss, N, V, Vp);
  }
  void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::logsumexp_rows(dt, F_(lse), CH_(logits), N, V, Vp,
                                         scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::logsumexp_rows(F_(lse), CF_(logits), N, V, Vp);
  }
  void crossentropy_partials(DType dt, void* sumexp, void* target_logit, int32_t* local_targets, const void* lse,
                             const void* row_max, const void* logits, const int32_t* targets, int64_t N, int64_t v0,
                             int64_t Vl) {
    check(Op::crossentropy, dt);
    cpu::crossentropy_partials(dt, F_(sumexp), F_(target_logit), local_targets, CF_(lse), CF_(row_max), logits,
                               targets, N, v0, Vl);
  }
  void crossentropy_combine(DType dt, void* lse, void* losses, const void* row_max, const void* sumexp,
                            const void* target_logit, int64_t N) {
    check(Op::crossentropy, dt);
    cpu::crossentropy_combine(F_(lse), F_(losses), CF_(row_max), CF_(sumexp), CF_(target_logit), N);
  }
  void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse, const int32_t* targets,
                                       float dloss, int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    if (is16(dt))
      return cpu::lowp16::crossentropy_backward_given_lse(dt, H_(logits), CF_(lse), targets, dloss, N, V, Vp,
                                                          scratch(Op::crossentropy, 0, 0, 0, 0, Vp));
    cpu::crossentropy_backward_given_lse(F_(logits), CF_(lse), targets, dloss, N, V, Vp);
  }
  void adamw_update(DType dt, void* p, const void* g, void* m, void* v, int64_t n,
                    const AdamWArgs& args) {
    check(Op::adamw, dt);
    cpu::adamw_update(F_(p), CF_(g), F_(m), F_(v), n, args);
  }
  void adamw_update_round(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWArgs& args,
                          DType to, void* copy) {
    check(Op::adamw, dt);
    MESHLM_CHECK(is16(to), "adamw_update_round: a bf16 or fp16 copy");
    cpu::adamw_update_round(F_(p), CF_(g), F_(m), F_(v), n, args, to, H_(copy));
  }
  void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& args) {
    // element-wise: the reference's definition, F16C rounding, over chunks on every thread
    constexpr int64_t kChunk = 1 << 14;
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += kChunk)
      reference::adamw_update_fp16_storage(p + i0, g + i0, m + i0, v + i0, std::min(kChunk, n - i0), args,
                                           [](float x) { return lowp::fp16_to_f32(lowp::f32_to_fp16(x)); });
  }
  double sum_squares(DType dt, const void* x, int64_t n) {
    check(Op::sum_squares, dt);
    return cpu::sum_squares(CF_(x), n);
  }

 private:
  void rope(DType dt, void* x, const void* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS, float sign) {
    check(Op::rope, dt);
    MESHLM_CHECK(HS % 2 == 0 && HS <= 512, "cpu backend: rope needs an even head size of at most 512");
    if (is16(dt)) return cpu::lowp16::rope(dt, H_(x), CF_(cos_sin), B, T, H, HS, sign);
    cpu::rope(F_(x), CF_(cos_sin), B, T, H, HS, sign);
  }
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
  // bf16 attention multiplies in bf16 where oneDNN has a bf16 kernel; elsewhere (and for fp16)
  // the heads are converted to fp32 (lowp16::attention_*).
  bool bf16_products(DType dt) const { return dt == DType::bf16 && gemm_.native_bf16(); }
  float* bf16_attention_scratch(const AttentionShape& a) {
    return conv_scratch(cpu::bf16attn::scratch_floats(a.T, a.HS, omp_get_max_threads()));
  }
  // One GEMM object (primitive cache and stream) per thread, for products inside parallel loops.
  OneDnnGemm* thread_gemms() {
    const int n = omp_get_max_threads();
    if (n > n_thread_gemms_) {
      thread_gemms_ = std::make_unique<OneDnnGemm[]>(size_t(n));
      n_thread_gemms_ = n;
    }
    return thread_gemms_.get();
  }
  OneDnnGemm gemm_;
  std::unique_ptr<OneDnnGemm[]> thread_gemms_;
  int n_thread_gemms_ = 0;
  std::vector<float> attn_scratch_, conv_scratch_;
};

#undef F_
#undef CF_
#undef H_
#undef CH_

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<KernelTable<CpuKernels>>(); }

}  // namespace meshlm
