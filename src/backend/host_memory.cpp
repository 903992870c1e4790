#include "backend/host_memory.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace meshlm {

void* HostMemory::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  MESHLM_CHECK(p, "out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, rounded);
  return p;
}

void HostMemory::deallocate(void* p, size_t) { std::free(p); }
void HostMemory::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void HostMemory::upload(void* dst, const void* host, size_t bytes) { copy(dst, host, bytes); }
void HostMemory::download(void* host, const void* src, size_t bytes) { copy(host, src, bytes); }
void HostMemory::zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

}  // namespace meshlm
