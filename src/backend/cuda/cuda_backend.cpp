// The "cuda" backend: tensors in device memory (one caching pool over cudaMalloc), every op
// queued on one stream (kernels.h launchers, cuBLASLt GEMMs), results that come back to the
// host (sums, amax) and download() synchronizing. fp32 and 16-bit storage like the cpu backend;
// adamw and sum_squares on fp32 masters. tensor_stats (the numerics report, off the training
// step's path) runs on the host over a downloaded copy with the reference kernel. Built into
// libmeshlm_cuda.so and loaded at run time (backend/cuda_loader.cpp); the entry points are at
// the end.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/cuda/abi.h"
#include "backend/cuda/bootstrap.h"
#include "backend/cuda/caching_allocator.h"
#include "backend/cuda/gemm_cublaslt.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.h"
#include "backend/kernel_table.h"
#include "backend/reference/kernels.h"
#include "core/error.h"
#include "core/rng.h"

#ifndef MESHLM_CUDA_ARCH_LIST
#define MESHLM_CUDA_ARCH_LIST "?"
#endif
#ifndef MESHLM_NVCC_VERSION
#define MESHLM_NVCC_VERSION "?"
#endif

namespace meshlm {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("cuda backend: ") + what + ": " + cudaGetErrorString(e));
}
#define CK(call) cuda_check((call), #call)

#define F_(p) static_cast<float*>(p)
#define CF_(p) static_cast<const float*>(p)
#define H_(p) static_cast<uint16_t*>(p)
#define CH_(p) static_cast<const uint16_t*>(p)

bool is16(DType dt) { return dt == DType::bf16 || dt == DType::fp16; }
bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::string(v) == value;
}
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's (Hopper wants 32 MiB)

// The device, its stream and the cuBLASLt state; created first, destroyed last.
struct Device {
  explicit Device(int requested) {
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    id = cuda::choose_device(requested, cuda::local_rank_from_env(), count);
    CK(cudaSetDevice(id));
    CK(cudaGetDeviceProperties(&props, id));
    CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  ~Device() {
    if (stream) cudaStreamDestroy(stream);
  }
  int id = 0;
  cudaDeviceProp props{};
  cudaStream_t stream = nullptr;
};

struct CudaKernels {
  explicit CudaKernels(int requested)
      : dev_(requested),
        pool_([](size_t b) {
                void* p = nullptr;
                return cudaMalloc(&p, b) == cudaSuccess ? p : (cudaGetLastError(), nullptr);
              },
              [](void* p) { cudaFree(p); }),
        workspace_(pool_.allocate(kWorkspaceBytes)),
        gemm_(dev_.stream, workspace_, kWorkspaceBytes),
        tc_attention_(!env_is("MESHLM_CUDA_ATTENTION", "simple")) {}
  ~CudaKernels() {
    cudaStreamSynchronize(dev_.stream);
    if (scratch_) pool_.deallocate(scratch_);
    if (aux_scratch_) pool_.deallocate(aux_scratch_);
    pool_.deallocate(workspace_);
  }

  const char* name() const { return "cuda"; }
  std::string describe() const {
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    return "cuda (device " + std::to_string(dev_.id) + ": " + dev_.props.name + ", sm_" +
           std::to_string(dev_.props.major) + std::to_string(dev_.props.minor) + ", " +
           std::to_string(dev_.props.totalGlobalMem >> 30) + " GiB; runtime " + version(rt) + ", driver " +
           version(drv) + ", " + gemm_.version() + ")";
  }
  bool host_addressable() const { return false; }
  bool supports(Op op, DType dt) const {
    if (op == Op::memory || op == Op::convert || op == Op::stats) return true;
    if (op == Op::quantize) return dt == DType::bf16;
    if (dt == DType::fp32) return true;
    if (op == Op::gemm && (dt == DType::fp8_e4m3 || dt == DType::fp8_e5m2)) return fp8_tensor_cores();
    if (op == Op::gemm) return is16(dt);
    return is16(dt) && op != Op::adamw && op != Op::sum_squares;
  }
  // fp8 tensor cores: Ada (8.9) and Hopper (9.0) on.
  bool fp8_tensor_cores() const { return dev_.props.major * 10 + dev_.props.minor >= 89; }
  // attention_tc.cu where it applies (16-bit, sm_80+, its shape and shared memory: launch.h),
  // unless MESHLM_CUDA_ATTENTION=simple asks for the warp-per-row kernels everywhere.
  bool tensor_core_attention(const AttentionShape& a, DType dt) const {
    return tc_attention_ && dev_.props.major >= 8 && cuda::tc_attention_fits(a, dt, dev_.props.sharedMemPerBlockOptin);
  }

  // ---- memory ----
  void* allocate(size_t bytes) {
    void* p = pool_.allocate(bytes);
    CK(cudaMemsetAsync(p, 0, bytes, s()));  // tensors start zeroed, as in host memory
    return p;
  }
  void deallocate(void* p, size_t) { pool_.deallocate(p); }
  void copy(void* dst, const void* src, size_t bytes) {
    if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s()));
  }
  void upload(void* dst, const void* host, size_t bytes) {
    // From pageable memory the call returns once `host` has been read: the caller may reuse it.
    // cudaMemcpyDefault (unified addressing): `dst` may also be host memory, as the staged
    // communicator's scalars are.
    if (bytes) CK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyDefault, s()));
  }
  void download(void* host, const void* src, size_t bytes) {
    if (bytes) CK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDefault, s()));
    synchronize();
  }
  void zero(void* dst, size_t bytes) {
    if (bytes) CK(cudaMemsetAsync(dst, 0, bytes, s()));
  }
  void synchronize() {
    CK(cudaStreamSynchronize(s()));
    CK(cudaGetLastError());  // a failed launch surfaces here with its cause
  }

  // ---- conversions and utilities ----
  void convert(DType to, void* dst, DType from, const void* src, int64_t n) {
    cuda::k::convert(s(), to, dst, from, src, n);
  }
  void convert_stochastic(DType to, void* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                          int64_t index0) {
    MESHLM_CHECK(is16(to), "convert_stochastic: to bf16 or fp16");
    cuda::k::convert_stochastic(s(), to, H_(dst), src, n, random_base(seed, stream), index0);
  }
  void round_to_format(DType format, float* x, int64_t n) { cuda::k::round_to_format(s(), format, x, n); }
  void accumulate(DType dt, void* dst, const void* src, int64_t n) {
    MESHLM_CHECK(dt == DType::fp32, "cuda backend: accumulate runs on fp32 buffers");
    cuda::k::accumulate(s(), F_(dst), CF_(src), n);
  }
  double sum(DType dt, const void* x, int64_t n) { return device_sum(dt, x, n, false); }
  double sum_squares(DType dt, const void* x, int64_t n) {
    check(Op::sum_squares, dt);
    return device_sum(dt, x, n, true);
  }
  TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n) {
    std::vector<unsigned char> host(size_t(n) * dtype_size(stored));
    download(host.data(), x, host.size());
    return reference::tensor_stats(format, stored, host.data(), n);
  }
  float amax(DType dt, const void* x, int64_t n) {
    check(Op::quantize, dt);
    uint32_t* bits = static_cast<uint32_t*>(scratch(1));
    zero(bits, 4);
    cuda::k::amax_bf16(s(), CH_(x), n, bits);
    return read_float_bits(bits);
  }
  float fake_quantize(DType format, void* y, const void* x, int64_t n, float scale) {
    uint32_t* bits = static_cast<uint32_t*>(scratch(1));
    zero(bits, 4);
    cuda::k::fake_quantize_bf16(s(), format, H_(y), CH_(x), n, scale, bits);
    return read_float_bits(bits);
  }
  // The amax by an atomic max on its bits (non-negative floats order like their bits); no wait.
  void quantize_fp8(DType format, void* q, const void* x, int64_t rows, int64_t cols, float scale, bool transpose,
                    float* amax) {
    cuda::k::quantize_fp8(s(), format, static_cast<uint8_t*>(q), CH_(x), rows, cols, scale, transpose,
                          reinterpret_cast<uint32_t*>(amax));
  }
  TensorStats quantize_blocks(const QuantSpec& q, void* y, const void* x, int64_t rows, int64_t cols) {
    uint64_t counts[4];
    float amax = 0;
    cuda::k::quantize_blocks(s(), q, H_(y), CH_(x), rows, cols, aux_scratch(cuda::k::quantize_work(q, rows, cols).bytes),
                             counts, &amax);
    TensorStats st;
    st.n = rows * cols;
    st.overflow = int64_t(counts[0]), st.zero = int64_t(counts[1]), st.underflow = int64_t(counts[2]);
    st.subnormal = int64_t(counts[3]);
    st.amax = amax;
    return st;
  }

  // ---- matrix products ----
  void gemm(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
            const void* B, int64_t ldb, float beta, void* C, int64_t ldc) {
    check(Op::gemm, dt);
    s();  // the device current for cuBLASLt
    gemm_.run({dt, DType::fp32, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, false, dt}, A, B, C);
  }
  // On fp8 tensor cores where cuBLASLt takes the call (gemm_plan.h fp8_gemm_native); else the
  // codes widened to bf16 (exact) and multiplied there: the same products and fp32 sums.
  void gemm_fp8(DType fa, DType fb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
                const void* B, int64_t ldb, float beta, DType c, void* C, int64_t ldc, const void* bias) {
    cuda::GemmCall g = cuda::gemm_fp8_call(fa, fb, M, N, K, lda, ldb, alpha, beta, c, ldc, bias != nullptr);
    if (M == 0 || N == 0) return;
    s();  // the device current for cuBLASLt
    if (cuda::fp8_gemm_native(g, dev_.props.major, dev_.props.minor, A, B) && gemm_.run_if_supported(g, A, B, C, bias))
      return;
    uint16_t* wide = static_cast<uint16_t*>(aux_scratch(size_t(M * K + N * K) * 2));  // A (M, K), B (N, K) in bf16
    cuda::k::fp8_to_bf16(s(), fa, wide, static_cast<const uint8_t*>(A), M, K, lda);
    cuda::k::fp8_to_bf16(s(), fb, wide + M * K, static_cast<const uint8_t*>(B), N, K, ldb);
    g.ab = DType::bf16;
    g.b_dtype.reset();
    g.lda = g.ldb = K;
    gemm_.run(g, wide, wide + M * K, C, bias);
  }

  void matmul_forward(DType dt, void* out, const void* inp, const void* w, const void* bias, int64_t N, int64_t C,
                      int64_t OC, WeightLayout layout) {
    check(Op::matmul, dt);
    s();  // the device current for cuBLASLt
    const bool out_in = layout == WeightLayout::out_in;
    gemm_.run(cuda::matmul_forward_call(dt, N, C, OC, out_in, bias != nullptr), inp, w, out, bias);
  }
  void matmul_backward(DType dt, void* dinp, void* dw, void* dbias, const void* dout, const void* inp, const void* w,
                       int64_t N, int64_t C, int64_t OC, WeightLayout layout) {
    check(Op::matmul, dt);
    s();  // the device current for cuBLASLt
    const bool out_in = layout == WeightLayout::out_in;
    if (dinp) gemm_.run(cuda::matmul_dinp_call(dt, N, C, OC, out_in), dout, w, dinp);
    if (dw && !out_in) gemm_.run(cuda::matmul_dweight_call(dt, N, C, OC, out_in), inp, dout, dw);
    else if (dw) gemm_.run(cuda::matmul_dweight_call(dt, N, C, OC, out_in), dout, inp, dw);
    if (dbias)
      cuda::k::bias_backward(s(), dt, F_(dbias), dout, N, OC, F_(scratch(cuda::bias_backward_scratch(N, OC))));
  }

  // ---- layers' kernels ----
  void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp, const void* w, const void* b,
                         int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    cuda::k::layernorm_forward(s(), dt, nullptr, out, F_(mean), F_(rstd), inp, nullptr, w, b, N, C);
  }
  void residual_layernorm_forward(DType dt, void* sum, void* out, void* mean, void* rstd, const void* a,
                                  const void* b, const void* w, const void* bias, int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    cuda::k::layernorm_forward(s(), dt, sum, out, F_(mean), F_(rstd), a, b, w, bias, N, C);
  }
  void layernorm_backward(DType dt, void* dinp, void* dw, void* db, const void* dout, const void* inp, const void* w,
                          const void* mean, const void* rstd, int64_t N, int64_t C) {
    check(Op::layernorm, dt);
    cuda::k::layernorm_backward(s(), dt, dinp, F_(dw), F_(db), dout, inp, w, CF_(mean), CF_(rstd), N, C,
                                F_(scratch(cuda::layernorm_backward_scratch(N, C))));
  }
  void attention_forward(DType dt, void* out, void* lse, const void* q, const void* k, const void* v,
                         const AttentionShape& a) {
    check(Op::attention, dt);
    if (tensor_core_attention(a, dt)) return cuda::k::attention_tc_forward(s(), dt, out, F_(lse), q, k, v, a);
    cuda::k::attention_forward(s(), dt, out, F_(lse), q, k, v, a);
  }
  void attention_decode(DType dt, void* out, const void* q, const void* k, const void* v, const AttentionShape& a,
                        int64_t len) {
    check(Op::attention, dt);
    cuda::k::attention_decode(s(), dt, out, q, k, v, a, len);
  }
  void attention_backward(DType dt, void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                          const void* v, const void* out, const void* lse, const AttentionShape& a) {
    check(Op::attention, dt);
    float* D = F_(scratch(cuda::attention_backward_scratch(a)));
    if (tensor_core_attention(a, dt)) {
      cuda::k::attention_delta(s(), dt, D, dout, out, a);
      return cuda::k::attention_tc_backward(s(), dt, dq, dk, dv, dout, q, k, v, CF_(lse), D, a);
    }
    cuda::k::attention_backward(s(), dt, dq, dk, dv, dout, q, k, v, out, CF_(lse), a, D);
  }
  void gelu_forward(DType dt, void* out, const void* inp, int64_t n) {
    check(Op::gelu, dt);
    cuda::k::gelu_forward(s(), dt, out, inp, n);
  }
  void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) {
    check(Op::gelu, dt);
    cuda::k::gelu_backward(s(), dt, dinp, inp, dout, n);
  }
  void rmsnorm_forward(DType dt, void* out, void* rstd, const void* inp, const void* w, int64_t N, int64_t C,
                       float eps) {
    check(Op::rmsnorm, dt);
    cuda::k::rmsnorm_forward(s(), dt, out, F_(rstd), inp, w, N, C, eps);
  }
  void rmsnorm_backward(DType dt, void* dinp, void* dw, const void* dout, const void* inp, const void* w,
                        const void* rstd, int64_t N, int64_t C) {
    check(Op::rmsnorm, dt);
    cuda::k::rmsnorm_backward(s(), dt, dinp, F_(dw), dout, inp, w, CF_(rstd), N, C,
                              F_(scratch(cuda::rmsnorm_backward_scratch(N, C))));
  }
  void rope_forward(DType dt, void* x, const void* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS) {
    check(Op::rope, dt);
    cuda::k::rope(s(), dt, x, CF_(cos_sin), B, T, H, HS, 1.0f);
  }
  void rope_backward(DType dt, void* dx, const void* cos_sin, int64_t B, int64_t T, int64_t H, int64_t HS) {
    check(Op::rope, dt);
    cuda::k::rope(s(), dt, dx, CF_(cos_sin), B, T, H, HS, -1.0f);
  }
  void swiglu_forward(DType dt, void* out, const void* gate, const void* up, int64_t n) {
    check(Op::swiglu, dt);
    cuda::k::swiglu_forward(s(), dt, out, gate, up, n);
  }
  void swiglu_backward(DType dt, void* dgate, void* dup, const void* dout, const void* gate, const void* up,
                       int64_t n) {
    check(Op::swiglu, dt);
    cuda::k::swiglu_backward(s(), dt, dgate, dup, dout, gate, up, n);
  }
  void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) {
    check(Op::residual, dt);
    cuda::k::residual_forward(s(), dt, out, a, b, n);
  }
  void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte, const void* wpe, int64_t B,
                         int64_t T, int64_t C) {
    check(Op::embedding, dt);
    cuda::k::embedding_forward(s(), dt, out, tokens, wte, wpe, B, T, C);
  }
  void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout, const int32_t* tokens, int64_t B,
                          int64_t T, int64_t C) {
    check(Op::embedding, dt);
    cuda::k::embedding_backward(s(), dt, F_(dwte), F_(dwpe), dout, tokens, B, T, C);
  }

  // ---- the loss ----
  void crossentropy_forward_backward(DType dt, void* losses, void* logits, const int32_t* targets, float dloss,
                                     int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    cuda::k::crossentropy_forward_backward(s(), dt, F_(losses), logits, targets, dloss, N, V, Vp);
  }
  void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    cuda::k::logsumexp_rows(s(), dt, F_(lse), logits, N, V, Vp);
  }
  void crossentropy_partials(DType dt, void* sumexp, void* target_logit, int32_t* local_targets, const void* lse,
                             const void* row_max, const void* logits, const int32_t* targets, int64_t N, int64_t v0,
                             int64_t Vl) {
    check(Op::crossentropy, dt);
    cuda::k::crossentropy_partials(s(), dt, F_(sumexp), F_(target_logit), local_targets, CF_(lse), CF_(row_max),
                                   logits, targets, N, v0, Vl);
  }
  void crossentropy_combine(DType dt, void* lse, void* losses, const void* row_max, const void* sumexp,
                            const void* target_logit, int64_t N) {
    check(Op::crossentropy, dt);
    cuda::k::crossentropy_combine(s(), F_(lse), F_(losses), CF_(row_max), CF_(sumexp), CF_(target_logit), N);
  }
  void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse, const int32_t* targets, float dloss,
                                       int64_t N, int64_t V, int64_t Vp) {
    check(Op::crossentropy, dt);
    cuda::k::crossentropy_backward_given_lse(s(), dt, logits, CF_(lse), targets, dloss, N, V, Vp);
  }

  // ---- the optimizer ----
  void adamw_update(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWArgs& args) {
    check(Op::adamw, dt);
    cuda::k::adamw(s(), F_(p), CF_(g), F_(m), F_(v), n, cuda::adamw_consts(args), DType::fp32, nullptr);
  }
  void adamw_update_round(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWArgs& args,
                          DType to, void* copy) {
    check(Op::adamw, dt);
    MESHLM_CHECK(is16(to), "adamw_update_round: a bf16 or fp16 copy");
    cuda::k::adamw(s(), F_(p), CF_(g), F_(m), F_(v), n, cuda::adamw_consts(args), to, copy);
  }
  void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& args) {
    cuda::k::adamw_fp16_storage(s(), p, g, m, v, n, cuda::adamw_consts(args));
  }

  cudaStream_t stream() const { return dev_.stream; }
  int device() const { return dev_.id; }

 private:
  // The stream, with this backend's device current in the calling thread (a checkpoint writer
  // or the communicator may call from another thread; a no-op when it already is).
  cudaStream_t s() const {
    cudaSetDevice(dev_.id);
    return dev_.stream;
  }
  static std::string version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
  void check(Op op, DType dt) const {
    if (!supports(op, dt))
      throw Error(std::string("cuda backend: ") + op_name(op) + " does not support " + dtype_name(dt));
  }
  // Device work space of `floats` floats (at least one 16-byte slot), grown on demand and kept.
  void* scratch(int64_t floats) {
    const size_t need = std::max<size_t>(size_t(floats) * 4, 16);
    if (need > scratch_bytes_) {
      synchronize();  // queued kernels may still use the old one
      if (scratch_) pool_.deallocate(scratch_);
      scratch_ = pool_.allocate(need);
      scratch_bytes_ = need;
    }
    return scratch_;
  }
  // The work space of gemm_fp8's fallback (the widened operands) and of quantize_blocks: one of
  // its own, apart from scratch() (other ops' partials), grown on demand and kept.
  void* aux_scratch(size_t bytes) {
    if (bytes > aux_scratch_bytes_) {
      synchronize();
      if (aux_scratch_) pool_.deallocate(aux_scratch_);
      aux_scratch_ = pool_.allocate(bytes);
      aux_scratch_bytes_ = bytes;
    }
    return aux_scratch_;
  }
  float read_float_bits(const uint32_t* bits) {
    uint32_t host = 0;
    download(&host, bits, 4);
    float f;
    std::memcpy(&f, &host, 4);
    return f;
  }
  double device_sum(DType dt, const void* x, int64_t n, bool squares) {
    double* partials = static_cast<double*>(scratch(2 * cuda::kSumBlocks));
    cuda::k::sum_partials(s(), dt, x, n, squares, partials);
    std::vector<double> host(cuda::kSumBlocks);
    download(host.data(), partials, host.size() * sizeof(double));
    double total = 0;
    for (double v : host) total += v;  // block order: the same sum on every run
    return total;
  }

  Device dev_;
  cuda::CachingPool pool_;
  void* workspace_;
  cuda::LtGemm gemm_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* aux_scratch_ = nullptr;
  size_t aux_scratch_bytes_ = 0;
  bool tc_attention_;
};

void write(char* buf, int len, const std::string& s) {
  if (len <= 0) return;
  std::snprintf(buf, size_t(len), "%s", s.c_str());
}

}  // namespace
}  // namespace meshlm

#define MESHLM_EXPORT extern "C" __attribute__((visibility("default")))

MESHLM_EXPORT int meshlm_cuda_abi() { return meshlm::cuda::kAbiVersion; }

MESHLM_EXPORT void meshlm_cuda_build(char* buf, int len) {
  meshlm::write(buf, len, std::string("nvcc ") + MESHLM_NVCC_VERSION + ", architectures " + MESHLM_CUDA_ARCH_LIST +
                              ", cuBLASLt " + std::to_string(cublasLtGetVersion()));
}

MESHLM_EXPORT int meshlm_cuda_probe(char* buf, int len) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    meshlm::write(buf, len, std::string("no usable device (") +
                                (e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found") + ")");
    return 0;
  }
  std::string s = std::to_string(n) + " device" + (n > 1 ? "s" : "");
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    s += std::string(i ? ", " : ": ") + std::to_string(i) + " " + p.name + " (sm_" + std::to_string(p.major) +
         std::to_string(p.minor) + ", " + std::to_string(p.totalGlobalMem >> 30) + " GiB)";
  }
  meshlm::write(buf, len, s);
  return n;
}

// The stream a cuda backend queues its work on (the NCCL communicator orders itself after it).
extern "C" cudaStream_t meshlm_cuda_stream_of(meshlm::Backend* be) {
  if (!be || std::string(be->name()) != "cuda") return nullptr;
  return static_cast<meshlm::KernelTable<meshlm::CudaKernels>*>(be)->impl().stream();
}

MESHLM_EXPORT meshlm::Backend* meshlm_cuda_create(int device, char* err, int len) {
  try {
    return new meshlm::KernelTable<meshlm::CudaKernels>(device);
  } catch (const std::exception& e) {
    meshlm::write(err, len, e.what());
    return nullptr;
  }
}
