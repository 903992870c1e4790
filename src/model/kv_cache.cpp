#include "model/kv_cache.h"

#include "core/error.h"

namespace meshlm {

KvCache::KvCache(Allocator& memory, DType dtype, int64_t layers, int64_t positions, int64_t channels)
    : positions_(positions), channels_(channels) {
  MESHLM_CHECK(layers > 0 && positions > 0 && channels > 0, "KvCache: sizes must be positive");
  for (int64_t l = 0; l < layers; l++) {
    k_.emplace_back(Shape{positions, channels}, dtype, memory);
    v_.emplace_back(Shape{positions, channels}, dtype, memory);
  }
}

}  // namespace meshlm
