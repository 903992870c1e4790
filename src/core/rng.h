// Counter-based random numbers: every value is a pure function of (seed, stream, index), so a
// parameter initialised by global element index is the same on any layout, and a stream can be
// resumed from a checkpoint by its counter alone. No hidden state.
#pragma once
#include <cstdint>
#include <string_view>

namespace meshlm {

// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
uint64_t mix64(uint64_t x);
// 64-bit FNV-1a of a string (stable across runs and machines): names a random stream.
uint64_t hash_name(std::string_view name);
// Uniform in [0, 1) from 53 random bits of (seed, stream, index).
double uniform01(uint64_t seed, uint64_t stream, uint64_t index);
// Standard normal (Box-Muller on two counter-based uniforms).
double normal01(uint64_t seed, uint64_t stream, uint64_t index);
// 32 random bits, e.g. for stochastic rounding.
uint32_t random_u32(uint64_t seed, uint64_t stream, uint64_t index);
// The same bits in two halves, for loops over an index: random_u32(seed, stream, i) ==
// random_bits(random_base(seed, stream), i); inline so that a loop over i vectorizes.
uint64_t random_base(uint64_t seed, uint64_t stream);
inline uint32_t random_bits(uint64_t base, uint64_t index) {
  uint64_t x = (base ^ index) + 0x9E3779B97F4A7C15ull;  // mix64, inline
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return uint32_t((x ^ (x >> 31)) >> 32);
}

// A sequential generator whose whole state is (seed, counter): checkpoint both to resume.
struct Rng {
  uint64_t seed = 0;
  uint64_t counter = 0;
  double uniform() { return uniform01(seed, 0, counter++); }
};

}  // namespace meshlm
