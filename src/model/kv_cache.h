// The keys and values of one sequence's positions so far, per attention layer, for generation
// one token at a time (Model::decode): each new token's attention reads the cache instead of
// recomputing every earlier position, so a generated token costs O(length), not O(length^2).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace meshlm {

class KvCache {
 public:
  // layers x (positions, channels) keys and as many values, in dtype (the compute dtype):
  // channels are a layer's key (= value) width, its kv heads x head size.
  KvCache(Allocator& memory, DType dtype, int64_t layers, int64_t positions, int64_t channels);
  void* k(int64_t layer) { return k_.at(size_t(layer)).data(); }  // (positions, channels)
  void* v(int64_t layer) { return v_.at(size_t(layer)).data(); }
  int64_t length() const { return len_; }        // positions filled
  int64_t capacity() const { return positions_; }
  int64_t channels() const { return channels_; }
  void advance(int64_t n = 1) { len_ += n; }  // a step wrote positions length() .. length() + n - 1
  void clear() { len_ = 0; }

 private:
  std::vector<Tensor> k_, v_;
  int64_t positions_, channels_, len_ = 0;
};

}  // namespace meshlm
