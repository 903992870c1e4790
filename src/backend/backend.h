// The backend: the memory every tensor lives in and the narrow list of kernels a training step
// needs (backend/ops.inc, the one declaration of each). A kernel takes pointers, sizes and a
// dtype; it never allocates, never looks at the model or the mesh. Backends: "reference" (naive
// loops, fp32 and fp64: the oracle the tests trust), "cpu" (oneDNN GEMMs + OpenMP/AVX-512
// kernels; fp32 and 16-bit storage), and two wrappers of either: "profiling" times every call,
// "guarded" makes its memory inaccessible outside backend calls (backend/guarded.h). "cuda"
// (backend/cuda/, docs/cuda.md) runs the same ops on an NVIDIA GPU from a library loaded at run
// time: nothing above the backend touches tensor memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/formats.h"
#include "core/tensor.h"

namespace meshlm {

// The families of ops, for supports(): a backend runs a family in a dtype or not.
enum class Op { memory, convert, stats, quantize, gemm, matmul, layernorm, attention, gelu, residual,
                embedding, crossentropy, adamw, sum_squares, rmsnorm, rope, swiglu };
const char* op_name(Op op);

// How a weight matrix is stored: in_out is (C, OC) (Hugging Face GPT-2 Conv1D),
// out_in is (OC, C) (nn.Linear and the tied embedding used as the LM head).
enum class WeightLayout { in_out, out_in };

// The shape of one causal attention call: B sequences of T positions, NH query heads and NKV
// key/value heads of HS channels (NH a multiple of NKV: query head h reads kv head
// h / (NH / NKV), grouped-query attention; NKV = NH is multi-head, 1 multi-query). Rows of q
// (and dq) are ldq elements apart, rows of k and v (dk, dv) ldkv; head h's channels are
// [h HS, (h+1) HS) of its row. out and dout are dense (B, T, NH HS).
struct AttentionShape {
  int64_t B = 0, T = 0, NH = 0, NKV = 0, HS = 0, ldq = 0, ldkv = 0;
  int64_t group() const { return NH / NKV; }  // query heads per kv head
};

struct AdamWArgs {
  float lr = 3e-4f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: param -= lr * wd * param
  float grad_scale = 1.0f;    // grads are multiplied by this first (clipping, loss-scale undo)
  int64_t step = 1;           // 1-based, for bias correction
};

// What rounding a tensor to a format does to its values (the numerics report).
struct TensorStats {
  int64_t n = 0;
  int64_t zero = 0;       // exactly zero already
  int64_t underflow = 0;  // non-zero, rounds to zero in the format
  int64_t subnormal = 0;  // lands among the format's subnormals
  int64_t overflow = 0;   // beyond the largest finite value, or inf / NaN already
  double amax = 0;        // largest finite magnitude
  void add(const TensorStats& o);
};

class Backend : public Allocator {
 public:
  ~Backend() override = default;
  virtual const char* name() const = 0;
  // One line for `meshlm info`: the backend and the libraries it runs on.
  virtual std::string describe() const { return name(); }
  virtual bool supports(Op op, DType dt) const = 0;
  // Whether the host can read and write this backend's buffers (host memory: cpu, reference,
  // guarded). False for device memory (cuda): the communicator then stages through the host.
  virtual bool host_addressable() const { return true; }

  // A client of the backend's memory other than its kernels: the communicator, whose
  // collectives read and write tensor buffers (possibly while they progress in the
  // background). It opens access around each of its calls; a no-op except on the guarded
  // backend. Calls nest.
  virtual void begin_client_access() {}
  virtual void end_client_access() {}

#define MESHLM_OP(R, name, family, key, params, args) virtual R name params = 0;
#include "backend/ops.inc"
#undef MESHLM_OP
};

// Opens the backend's memory to a declared client for the life of the object.
class ClientAccess {
 public:
  explicit ClientAccess(Backend* be) : be_(be) {
    if (be_) be_->begin_client_access();
  }
  ~ClientAccess() {
    if (be_) be_->end_client_access();
  }
  ClientAccess(const ClientAccess&) = delete;
  ClientAccess& operator=(const ClientAccess&) = delete;

 private:
  Backend* be_;
};

// "cpu", "reference", or either with "-guarded" ("cpu-guarded"); throws meshlm::Error on
// anything else.
std::unique_ptr<Backend> make_backend(const std::string& name);
std::unique_ptr<Backend> make_reference_backend();
std::unique_ptr<Backend> make_cpu_backend();
// The names make_backend takes, for --help and errors.
const char* backend_names();

// The CUDA backend, from libmeshlm_cuda.so (backend/cuda_loader.cpp): device -1 takes the
// local rank's device. Throws meshlm::Error with one line when the library was not built,
// cannot be loaded, or finds no usable GPU.
std::unique_ptr<Backend> make_cuda_backend(int device = -1);
// What `meshlm info` says about CUDA: whether the library was built and loads, its build line,
// and the devices it sees (or why none is usable).
struct CudaStatus {
  bool built = false;   // configured with the CUDA library (MESHLM_CUDA)
  bool loaded = false;  // the library loaded
  int devices = 0;      // usable devices
  std::string library;  // where it was loaded from (or looked for)
  std::string build;    // nvcc, architectures, cuBLASLt
  std::string detail;   // the devices, or why the library or a device is unusable
};
CudaStatus cuda_status();
// A function of libmeshlm_cuda.so by name (nullptr when the library cannot be loaded): how
// parallel/ reaches the NCCL communicator built into it.
void* cuda_library_symbol(const char* name);

}  // namespace meshlm
