// The memory half of a backend whose tensors live in host memory (cpu, reference): 64-byte
// aligned, zero-filled allocations, memcpy and memset. Impl structs of KernelTable derive from it.
#pragma once
#include <cstddef>

namespace meshlm {

struct HostMemory {
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  void copy(void* dst, const void* src, size_t bytes);
  void upload(void* dst, const void* host, size_t bytes);
  void download(void* host, const void* src, size_t bytes);
  void zero(void* dst, size_t bytes);
  void synchronize() {}
};

}  // namespace meshlm
