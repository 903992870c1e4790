// The cuda backend's device memory: one caching pool over the raw allocator (cudaMalloc; never
// managed memory). Freed blocks are kept by size class and reused, so a training step, which
// frees and allocates the same sizes every step, stops calling cudaMalloc (which synchronizes
// the device) after the first. Plain host logic over two functions, so the CPU tests run it
// over malloc. Blocks are reused in stream order: the backend has one stream, and a block
// freed while a queued kernel still reads it is only handed to work queued after that kernel.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace meshlm::cuda {

class CachingPool {
 public:
  using RawAlloc = std::function<void*(size_t)>;  // nullptr when out of memory
  using RawFree = std::function<void(void*)>;
  CachingPool(RawAlloc alloc, RawFree free) : alloc_(std::move(alloc)), free_(std::move(free)) {}
  ~CachingPool() { release(); }
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  // At least `bytes` bytes (a size class: 512-byte steps up to 1 MiB, then 2 MiB steps).
  // Out of memory: the cache is given back and the allocation retried once, then meshlm::Error.
  void* allocate(size_t bytes);
  void deallocate(void* p);
  // Gives every cached (free) block back to the raw allocator.
  void release();

  static size_t size_class(size_t bytes);
  size_t in_use() const { return in_use_; }
  size_t cached() const { return cached_; }
  size_t peak() const { return peak_; }
  size_t raw_allocations() const { return raw_allocs_; }
  std::string describe() const;

 private:
  RawAlloc alloc_;
  RawFree free_;
  std::map<size_t, std::vector<void*>> free_blocks_;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live_;             // block -> size class
  size_t in_use_ = 0, cached_ = 0, peak_ = 0, raw_allocs_ = 0;
};

}  // namespace meshlm::cuda
