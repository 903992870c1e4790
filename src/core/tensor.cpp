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

void AllocatorFree::operator()(void* p) const {
  if (allocator) allocator->deallocate(p, bytes);
  else std::free(p);
}

namespace {
void check_shape(const Shape& shape) {
  for (int64_t d : shape) MESHLM_CHECK(d >= 0, "tensor shape " + shape_str(shape) + " has a negative size");
}
}  // namespace

Tensor::Tensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  check_shape(shape_);
  size_t bytes = nbytes();
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  MESHLM_CHECK(rounded == 0 || p, "out of memory allocating " + std::to_string(bytes) + " bytes");
  if (p) std::memset(p, 0, rounded);
  buf_ = std::unique_ptr<void, AllocatorFree>(p, AllocatorFree{nullptr, rounded});
}

Tensor::Tensor(Shape shape, DType dtype, Allocator& allocator) : shape_(std::move(shape)), dtype_(dtype) {
  check_shape(shape_);
  const size_t bytes = nbytes();
  buf_ = std::unique_ptr<void, AllocatorFree>(allocator.allocate(bytes), AllocatorFree{&allocator, bytes});
}

Buffer::Buffer(size_t bytes, Allocator& allocator)
    : bytes_(bytes), buf_(allocator.allocate(bytes), AllocatorFree{&allocator, bytes}) {}

}  // namespace meshlm
