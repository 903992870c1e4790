#include "backend/cpu/gemm_onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"

namespace meshlm {

using dnnl::memory;

struct OneDnnGemm::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  struct Entry {
    dnnl::matmul prim;
    memory::desc a, b, c, bias;
  };
  std::map<decltype(GemmDesc{}.key()), Entry> cache;
};

OneDnnGemm::OneDnnGemm() : impl_(std::make_unique<Impl>()) {}
OneDnnGemm::~OneDnnGemm() = default;
size_t OneDnnGemm::cached_primitives() const { return impl_->cache.size(); }

static memory::data_type dnnl_type(DType dt) {
  switch (dt) {
    case DType::fp32: return memory::data_type::f32;
    case DType::bf16: return memory::data_type::bf16;
    case DType::fp16: return memory::data_type::f16;
    default: throw Error(std::string("oneDNN gemm: unsupported operand dtype ") + dtype_name(dt));
  }
}

void OneDnnGemm::run(const GemmDesc& d, const void* A, const void* B, void* C, const void* bias) {
  GemmRoute route = d.route;
  if (route == GemmRoute::automatic)
    route = d.ab_dtype == DType::fp32 && d.c_dtype == DType::fp32 && !d.trans_b && (!d.has_bias || d.beta == 0.0f)
                ? GemmRoute::sgemm
                : GemmRoute::primitive;
  if (route == GemmRoute::sgemm) {
    MESHLM_CHECK(d.ab_dtype == DType::fp32 && d.c_dtype == DType::fp32 &&
                     d.bias_dtype == DType::fp32, "oneDNN sgemm takes fp32 operands only");
    float* c = static_cast<float*>(C);
    float beta = d.beta;
    if (d.has_bias) {  // C = bias broadcast over rows, then accumulate the product into it
      MESHLM_CHECK(d.beta == 0.0f, "gemm: bias with beta != 0 is not supported");
      const float* b = static_cast<const float*>(bias);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < d.M; i++)
        for (int64_t j = 0; j < d.N; j++) c[i * d.ldc + j] = b[j];
      beta = 1.0f;
    }
    onednn_sgemm(d.trans_a, d.trans_b, d.M, d.N, d.K, d.alpha, static_cast<const float*>(A), d.lda,
                 static_cast<const float*>(B), d.ldb, beta, c, d.ldc);
    return;
  }
  auto key = d.key();
  auto it = impl_->cache.find(key);
  if (it == impl_->cache.end()) {
    const auto t = dnnl_type(d.ab_dtype);
    // Row-major op(A) (M, K): strides (lda, 1), or (1, lda) when A is stored transposed.
    memory::desc a({d.M, d.K}, t, d.trans_a ? memory::dims{1, d.lda} : memory::dims{d.lda, 1});
    memory::desc b({d.K, d.N}, t, d.trans_b ? memory::dims{1, d.ldb} : memory::dims{d.ldb, 1});
    memory::desc c({d.M, d.N}, dnnl_type(d.c_dtype), memory::dims{d.ldc, 1});
    memory::desc bias_md;
    if (d.has_bias) bias_md = memory::desc({1, d.N}, dnnl_type(d.bias_dtype), memory::dims{d.N, 1});
    dnnl::primitive_attr attr;
    if (d.alpha != 1.0f) attr.set_output_scales(0, {d.alpha});
    if (d.beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(d.beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::desc md = d.has_bias ? dnnl::matmul::desc(a, b, bias_md, c)
                                       : dnnl::matmul::desc(a, b, c);
    dnnl::matmul::primitive_desc pd(md, attr, impl_->engine);
    it = impl_->cache.emplace(key, Impl::Entry{dnnl::matmul(pd), a, b, c, bias_md}).first;
  }
  auto& e = it->second;
  auto& eng = impl_->engine;
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(e.a, eng, const_cast<void*>(A))},
      {DNNL_ARG_WEIGHTS, memory(e.b, eng, const_cast<void*>(B))},
      {DNNL_ARG_DST, memory(e.c, eng, C)}};
  if (d.has_bias) args.emplace(DNNL_ARG_BIAS, memory(e.bias, eng, const_cast<void*>(bias)));
  e.prim.execute(impl_->stream, args);
  impl_->stream.wait();
}

void onednn_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  auto st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  MESHLM_CHECK(st == dnnl_success, "dnnl_sgemm failed");
}

}  // namespace meshlm
