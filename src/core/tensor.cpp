#include "core/tensor.h"

#include <sys/mman.h>

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

namespace {
constexpr size_t kPagesOfTheirOwn = size_t(1) << 20;
size_t rounded_bytes(size_t bytes) { return (bytes + 63) / 64 * 64; }
}  // namespace

void* host_allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t rounded = rounded_bytes(bytes);
  if (rounded >= kPagesOfTheirOwn) {  // anonymous pages: zero until written
    void* p = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MESHLM_CHECK(p != MAP_FAILED, "out of memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void* p = std::aligned_alloc(64, rounded);
  MESHLM_CHECK(p, "out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, rounded);
  return p;
}

void host_free(void* p, size_t bytes) {
  if (!p) return;
  const size_t rounded = rounded_bytes(bytes);
  if (rounded >= kPagesOfTheirOwn)
    ::munmap(p, rounded);
  else
    std::free(p);
}

void AllocatorFree::operator()(void* p) const {
  if (allocator) allocator->deallocate(p, bytes);
  else host_free(p, bytes);
}

namespace {
void check_shape(const Shape& shape) {
  for (int64_t d : shape) MESHLM_CHECK(d >= 0, "tensor shape " + shape_str(shape) + " has a negative size");
}
}  // namespace

Tensor::Tensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  check_shape(shape_);
  const size_t bytes = nbytes();
  buf_ = std::unique_ptr<void, AllocatorFree>(host_allocate(bytes), AllocatorFree{nullptr, bytes});
}

Tensor::Tensor(Shape shape, DType dtype, Allocator& allocator) : shape_(std::move(shape)), dtype_(dtype) {
  check_shape(shape_);
  const size_t bytes = nbytes();
  buf_ = std::unique_ptr<void, AllocatorFree>(allocator.allocate(bytes), AllocatorFree{&allocator, bytes});
}

Buffer::Buffer(size_t bytes, Allocator& allocator)
    : bytes_(bytes), buf_(allocator.allocate(bytes), AllocatorFree{&allocator, bytes}) {}

}  // namespace meshlm
