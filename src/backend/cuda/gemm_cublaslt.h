// GEMMs through cuBLASLt: fp32 (CUBLAS_COMPUTE_32F: no TF32), bf16 and fp16 operands with fp32
// accumulation, C in fp32 or the operand dtype, beta = 1 for the += of gradients, the bias as
// an epilogue. Each plan's descriptors and algorithm are chosen once (heuristic, first result)
// and kept by AlgoKey, so a shape always runs the same algorithm: reproducible results.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <unordered_map>

#include "backend/cuda/gemm_plan.h"

namespace meshlm::cuda {

class LtGemm {
 public:
  LtGemm(cudaStream_t stream, void* workspace, size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // C = alpha op(A) op(B) + beta C (+ bias), meshlm's row-major call (gemm_plan.h).
  void run(const GemmCall& g, const void* A, const void* B, void* C, const void* bias = nullptr);
  // run(), or false (nothing queued) where cuBLASLt has no algorithm for the call; the answer is
  // kept per AlgoKey like the algorithms.
  bool run_if_supported(const GemmCall& g, const void* A, const void* B, void* C, const void* bias = nullptr);
  size_t cached_plans() const { return cache_.size(); }
  std::string version() const;

 private:
  struct Entry;
  Entry& entry(const LtPlan& p, const AlgoKey& key);  // found = false where there is no algorithm
  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::unordered_map<AlgoKey, std::unique_ptr<Entry>, AlgoKeyHash> cache_;
};

}  // namespace meshlm::cuda
