#include "backend/cuda/gemm_cublaslt.h"

#include "core/error.h"

namespace meshlm::cuda {
namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLASLt: ") + what + " failed: " + cublasLtGetStatusString(s));
}

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::fp32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::fp16: return CUDA_R_16F;
    case DType::fp8_e4m3: return CUDA_R_8F_E4M3;
    case DType::fp8_e5m2: return CUDA_R_8F_E5M2;
    default: throw Error(std::string("cuda gemm: no cuBLASLt type for ") + dtype_name(dt));
  }
}

cublasLtMatrixLayout_t layout(const LtLayout& l) {
  cublasLtMatrixLayout_t m = nullptr;
  check(cublasLtMatrixLayoutCreate(&m, cuda_type(l.dt), uint64_t(l.rows), uint64_t(l.cols), l.ld), "layout");
  return m;
}

template <class T>
void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v, const char* what) {
  check(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), what);
}

}  // namespace

struct LtGemm::Entry {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  ~Entry() {
    if (op) cublasLtMatmulDescDestroy(op);
    for (auto l : {a, b, c})
      if (l) cublasLtMatrixLayoutDestroy(l);
  }
};

LtGemm::LtGemm(cudaStream_t stream, void* workspace, size_t workspace_bytes)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check(cublasLtCreate(&handle_), "cublasLtCreate");
}

LtGemm::~LtGemm() {
  cache_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

std::string LtGemm::version() const { return "cuBLASLt " + std::to_string(cublasLtGetVersion()); }

LtGemm::Entry& LtGemm::entry(const LtPlan& p, const AlgoKey& key) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return *it->second;
  auto e = std::make_unique<Entry>();
  check(cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
  set(e->op, CUBLASLT_MATMUL_DESC_TRANSA, p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, "transa");
  set(e->op, CUBLASLT_MATMUL_DESC_TRANSB, p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, "transb");
  if (p.bias) {
    set(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS, "epilogue");
    set(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(cuda_type(p.bias_dtype)), "bias type");
  }
  e->a = layout(p.a);
  e->b = layout(p.b);
  e->c = layout(p.c);
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = workspace_bytes_;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
        "workspace preference");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle_, e->op, e->a, e->b, e->c, e->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // No algorithm: CUBLAS_STATUS_NOT_SUPPORTED or no result (kept, so it is asked once).
  if (st != CUBLAS_STATUS_NOT_SUPPORTED) check(st, "algorithm heuristic");
  e->found = st == CUBLAS_STATUS_SUCCESS && found > 0;
  e->algo = result.algo;
  return *cache_.emplace(key, std::move(e)).first->second;
}

void LtGemm::run(const GemmCall& g, const void* A, const void* B, void* C, const void* bias) {
  if (!run_if_supported(g, A, B, C, bias)) {
    const LtPlan p = make_lt_plan(g);
    throw Error("cuBLASLt: no algorithm for " + describe(algo_key(p, B, A, C)));
  }
}

bool LtGemm::run_if_supported(const GemmCall& g, const void* A, const void* B, void* C, const void* bias) {
  if (g.M == 0 || g.N == 0) return true;
  if (g.K == 0) {  // an empty sum: C unchanged is the only case meshlm asks for (+= of nothing)
    MESHLM_CHECK(g.beta == 1.0f && !g.bias, "cuda gemm: K = 0 with beta != 1 or a bias");
    return true;
  }
  const LtPlan p = make_lt_plan(g);
  // cuBLASLt's A is meshlm's B (gemm_plan.h).
  const void* la = B;
  const void* lb = A;
  Entry& e = entry(p, algo_key(p, la, lb, C));
  if (!e.found) return false;
  if (p.bias) set(e.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "bias pointer");
  check(cublasLtMatmul(handle_, e.op, &p.alpha, la, e.a, lb, e.b, &p.beta, C, e.c, C, e.c, &e.algo, workspace_,
                       workspace_bytes_, stream_),
        "matmul");
  return true;
}

}  // namespace meshlm::cuda
