// Tensor: a shape, a dtype and an owning, 64-byte aligned buffer. TensorView is the same
// without ownership (a slice of a flat buffer, e.g. one parameter inside the parameter buffer).
// Shapes are row-major; dim 0 is the outermost.
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
  Tensor(Shape shape, DType dtype);  // zero-filled
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  void* data() { return buf_.get(); }
  const void* data() const { return buf_.get(); }
  template <class T> T* as() { return static_cast<T*>(data()); }
  template <class T> const T* as() const { return static_cast<const T*>(data()); }
  TensorView view() { return {data(), shape_, dtype_}; }
  void zero();

 private:
  struct Free { void operator()(void* p) const; };
  Shape shape_;
  DType dtype_ = DType::fp32;
  std::unique_ptr<void, Free> buf_;
};

}  // namespace meshlm
