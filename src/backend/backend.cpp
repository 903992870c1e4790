#include "backend/backend.h"

#include "core/error.h"

namespace meshlm {

const char* op_name(Op op) {
  switch (op) {
    case Op::gemm: return "gemm";
    case Op::matmul: return "matmul";
    case Op::layernorm: return "layernorm";
    case Op::attention: return "attention";
    case Op::gelu: return "gelu";
    case Op::residual: return "residual";
    case Op::embedding: return "embedding";
    case Op::crossentropy: return "crossentropy";
    case Op::adamw: return "adamw";
    case Op::sum_squares: return "sum_squares";
  }
  return "?";
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "reference") return make_reference_backend();
  throw Error("unknown backend '" + name + "' (expected cpu or reference)");
}

}  // namespace meshlm
