#include "backend/host_memory.h"

#include <cstring>

#include "core/tensor.h"

namespace meshlm {

void* HostMemory::allocate(size_t bytes) { return host_allocate(bytes); }
void HostMemory::deallocate(void* p, size_t bytes) { host_free(p, bytes); }
void HostMemory::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void HostMemory::upload(void* dst, const void* host, size_t bytes) { copy(dst, host, bytes); }
void HostMemory::download(void* host, const void* src, size_t bytes) { copy(host, src, bytes); }
void HostMemory::zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

}  // namespace meshlm
