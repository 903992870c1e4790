// The entry points of libmeshlm_cuda.so, which backend/cuda_loader.cpp looks up by name. The
// library and the binary must agree on the Backend class: kAbiVersion counts the ops of
// backend/ops.inc (and is bumped by hand when a signature changes), and the loader refuses a
// library built from another op list.
#pragma once
#include "backend/backend.h"

namespace meshlm::cuda {

constexpr int count_ops() {
  int n = 0;
#define MESHLM_OP(R, name, family, key, params, args) ++n;
#include "backend/ops.inc"
#undef MESHLM_OP
  return n;
}
constexpr int kAbiVersion = 1 * 1000 + count_ops();

}  // namespace meshlm::cuda

extern "C" {
// kAbiVersion of the library.
using meshlm_cuda_abi_fn = int (*)();
// One line about the library's build (nvcc, architectures, cuBLASLt, NCCL) into buf.
using meshlm_cuda_build_fn = void (*)(char* buf, int len);
// The number of usable devices (0 if none), with one line about them or why there are none.
using meshlm_cuda_probe_fn = int (*)(char* buf, int len);
// A backend on `device` (-1: chosen from the local rank), or nullptr with the reason in err.
using meshlm_cuda_create_fn = meshlm::Backend* (*)(int device, char* err, int len);
}
