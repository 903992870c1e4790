// Tensor: a shape, a dtype and an owning, 64-byte aligned, zero-filled buffer from an Allocator.
// A backend is an Allocator (its tensors live in its memory, which only the backend reads or
// writes); without one a tensor is host memory (tests, host-side staging). TensorView is the
// same without ownership. Shapes are row-major; dim 0 is the outermost.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace meshlm {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(4, 768)"

// Where tensor memory comes from. allocate returns `bytes` of zero-filled memory aligned to 64
// bytes (nullptr for 0 bytes), or throws; deallocate takes back what allocate gave.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
};

// Host memory, zero-filled and 64-byte aligned. Blocks of 1 MiB or more are pages of their own
// (mmap), given back to the system when freed: through malloc a freed block can stay resident
// (glibc's mmap threshold rises with each large free), so a run's start-up transients would
// count in its resident memory for the rest of the run.
void* host_allocate(size_t bytes);
void host_free(void* p, size_t bytes);

// Frees memory through its allocator (null: host memory, host_free).
struct AllocatorFree {
  Allocator* allocator;
  size_t bytes;
  void operator()(void* p) const;
};

struct TensorView {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::fp32;

  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, DType dtype);                         // host memory, zero-filled
  Tensor(Shape shape, DType dtype, Allocator& allocator);  // the allocator's memory, zero-filled
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  void* data() { return buf_.get(); }
  const void* data() const { return buf_.get(); }
  // Element pointers. Only host tensors, and the backend on its own memory, may dereference them.
  template <class T> T* as() { return static_cast<T*>(data()); }
  template <class T> const T* as() const { return static_cast<const T*>(data()); }
  TensorView view() { return {data(), shape_, dtype_}; }

 private:
  Shape shape_;
  DType dtype_ = DType::fp32;
  std::unique_ptr<void, AllocatorFree> buf_{nullptr, AllocatorFree{nullptr, 0}};
};

// Untyped bytes from an allocator: token ids and other buffers that are not tensors of a float
// format. Zero-filled, 64-byte aligned, like a Tensor's.
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes, Allocator& allocator);
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;
  size_t bytes() const { return bytes_; }
  void* data() { return buf_.get(); }
  const void* data() const { return buf_.get(); }
  template <class T> T* as() { return static_cast<T*>(data()); }
  template <class T> const T* as() const { return static_cast<const T*>(data()); }

 private:
  size_t bytes_ = 0;
  std::unique_ptr<void, AllocatorFree> buf_{nullptr, AllocatorFree{nullptr, 0}};
};

}  // namespace meshlm
