// The op families and TensorStats: what every backend, the CUDA library's too, links.
#include <algorithm>

#include "backend/backend.h"

namespace meshlm {

const char* op_name(Op op) {
  switch (op) {
    case Op::memory: return "memory";
    case Op::convert: return "convert";
    case Op::stats: return "stats";
    case Op::quantize: return "quantize";
    case Op::gemm: return "gemm";
    case Op::matmul: return "matmul";
    case Op::layernorm: return "layernorm";
    case Op::attention: return "attention";
    case Op::gelu: return "gelu";
    case Op::residual: return "residual";
    case Op::embedding: return "embedding";
    case Op::rmsnorm: return "rmsnorm";
    case Op::rope: return "rope";
    case Op::swiglu: return "swiglu";
    case Op::crossentropy: return "crossentropy";
    case Op::adamw: return "adamw";
    case Op::sum_squares: return "sum_squares";
  }
  return "?";
}

void TensorStats::add(const TensorStats& o) {
  n += o.n;
  zero += o.zero;
  underflow += o.underflow;
  subnormal += o.subnormal;
  overflow += o.overflow;
  amax = std::max(amax, o.amax);
}

}  // namespace meshlm
