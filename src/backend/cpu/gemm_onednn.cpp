#include "backend/cpu/gemm_onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <vector>

#include "core/error.h"
#include "core/lowp.h"

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
  int native_bf16 = -1;  // whether oneDNN multiplies bf16 on this CPU (-1: not asked yet)
  std::vector<float> a32, b32, c32, bias32;  // the fp32 copies of the emulated route
};

namespace {
// Rows of a strided 16-bit matrix into a dense fp32 one (ld = cols), and back.
void rows_to_f32(DType dt, float* dst, const void* src, int64_t rows, int64_t cols, int64_t ld) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) lowp::to_f32(dt, dst + r * cols, s + r * ld, cols);
}
void rows_from_f32(DType dt, void* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  uint16_t* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) lowp::from_f32(dt, d + r * ld, src + r * cols, cols);
}
}  // namespace

bool OneDnnGemm::native_bf16() const {
  if (impl_->native_bf16 < 0) {
    try {  // a CPU without AVX512-BF16 / AVX-512 (an AVX2 machine) has no bf16 matmul in oneDNN 2.x
      memory::desc a({2, 2}, memory::data_type::bf16, memory::dims{2, 1});
      memory::desc c({2, 2}, memory::data_type::f32, memory::dims{2, 1});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), impl_->engine);
      impl_->native_bf16 = 1;
    } catch (const dnnl::error&) {
      impl_->native_bf16 = 0;
    }
  }
  return impl_->native_bf16 == 1;
}

// bf16 operands on a CPU oneDNN has no bf16 kernel for: the operands (exact in fp32) converted,
// the product in fp32 with fp32 accumulation - the same arithmetic the bf16 kernel promises -
// and a bf16 C rounded once at the end.
void OneDnnGemm::run_emulated(const GemmDesc& d, const void* A, const void* B, void* C, const void* bias) {
  Impl& m = *impl_;
  const int64_t ar = d.trans_a ? d.K : d.M, ac = d.trans_a ? d.M : d.K;  // A as stored
  const int64_t br = d.trans_b ? d.N : d.K, bc = d.trans_b ? d.K : d.N;
  m.a32.resize(size_t(ar * ac));
  m.b32.resize(size_t(br * bc));
  rows_to_f32(d.ab_dtype, m.a32.data(), A, ar, ac, d.lda);
  rows_to_f32(d.ab_dtype, m.b32.data(), B, br, bc, d.ldb);
  GemmDesc f = d;
  f.ab_dtype = f.c_dtype = f.bias_dtype = DType::fp32;
  f.lda = ac, f.ldb = bc;
  const void* bias32 = bias;
  if (d.has_bias && d.bias_dtype != DType::fp32) {
    m.bias32.resize(size_t(d.N));
    rows_to_f32(d.bias_dtype, m.bias32.data(), bias, 1, d.N, d.N);
    bias32 = m.bias32.data();
  }
  if (d.c_dtype == DType::fp32) return run(f, m.a32.data(), m.b32.data(), C, bias32);
  m.c32.resize(size_t(d.M * d.N));
  if (d.beta != 0.0f) rows_to_f32(d.c_dtype, m.c32.data(), C, d.M, d.N, d.ldc);
  f.ldc = d.N;
  run(f, m.a32.data(), m.b32.data(), m.c32.data(), bias32);
  rows_from_f32(d.c_dtype, C, m.c32.data(), d.M, d.N, d.ldc);
}

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
  if (d.ab_dtype == DType::bf16 && !native_bf16()) return run_emulated(d, A, B, C, bias);
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
