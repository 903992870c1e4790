#include "core/rng.h"

#include <cmath>

namespace meshlm {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

static uint64_t bits64(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(mix64(mix64(seed) ^ stream) ^ index);
}

double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
  return double(bits64(seed, stream, index) >> 11) * 0x1p-53;
}

double normal01(uint64_t seed, uint64_t stream, uint64_t index) {
  // Two independent uniforms from the index's two halves of a doubled counter.
  double u1 = (double(bits64(seed, stream, 2 * index) >> 11) + 1.0) * 0x1p-53;  // (0, 1]
  double u2 = double(bits64(seed, stream, 2 * index + 1) >> 11) * 0x1p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t random_base(uint64_t seed, uint64_t stream) { return mix64(mix64(seed) ^ stream); }

uint32_t random_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  return uint32_t(bits64(seed, stream, index) >> 32);
}

}  // namespace meshlm
