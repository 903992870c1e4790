#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace meshlm {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

void Tensor::Free::operator()(void* p) const { std::free(p); }

Tensor::Tensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  for (int64_t d : shape_) MESHLM_CHECK(d >= 0, "tensor shape " + shape_str(shape_) + " has a negative size");
  size_t bytes = nbytes();
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  MESHLM_CHECK(rounded == 0 || p, "out of memory allocating " + std::to_string(bytes) + " bytes");
  if (p) std::memset(p, 0, rounded);
  buf_.reset(p);
}

void Tensor::zero() {
  if (buf_) std::memset(buf_.get(), 0, nbytes());
}

}  // namespace meshlm
