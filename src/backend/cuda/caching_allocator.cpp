#include "backend/cuda/caching_allocator.h"

#include <algorithm>

#include "core/error.h"

namespace meshlm::cuda {

size_t CachingPool::size_class(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSplit = size_t(1) << 20;
  bytes = std::max<size_t>(bytes, 1);
  if (bytes <= kSplit) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

void* CachingPool::allocate(size_t bytes) {
  const size_t cls = size_class(bytes);
  void* p = nullptr;
  auto it = free_blocks_.find(cls);
  if (it != free_blocks_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    cached_ -= cls;
  } else {
    p = alloc_(cls);
    if (!p) {  // give the cache back and try once more
      release();
      p = alloc_(cls);
    }
    if (!p)
      throw Error("cuda backend: out of device memory allocating " + std::to_string(cls) + " bytes (" + describe() +
                  ")");
    raw_allocs_++;
  }
  live_[p] = cls;
  in_use_ += cls;
  peak_ = std::max(peak_, in_use_);
  return p;
}

void CachingPool::deallocate(void* p) {
  if (!p) return;
  auto it = live_.find(p);
  MESHLM_CHECK(it != live_.end(), "cuda backend: freeing a block the pool did not allocate");
  const size_t cls = it->second;
  live_.erase(it);
  in_use_ -= cls;
  cached_ += cls;
  free_blocks_[cls].push_back(p);
}

void CachingPool::release() {
  for (auto& [cls, blocks] : free_blocks_)
    for (void* p : blocks) free_(p);
  free_blocks_.clear();
  cached_ = 0;
}

std::string CachingPool::describe() const {
  auto mib = [](size_t b) { return std::to_string(b >> 20) + " MiB"; };
  return "in use " + mib(in_use_) + ", cached " + mib(cached_) + ", peak " + mib(peak_);
}

}  // namespace meshlm::cuda
