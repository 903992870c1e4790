#include "core/checksum.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

// Word-wise mix over 8-byte little-endian words, then the tail; streamable in chunks whose
// sizes are multiples of 8 (see Checksum below).
namespace {
struct Checksum {
  uint64_t h;
  explicit Checksum(uint64_t n) : h(0x6a09e667f3bcc908ull ^ n) {}
  void words(const unsigned char* p, size_t n) {  // n % 8 == 0
    for (size_t i = 0; i < n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = mix64(h ^ w);
    }
  }
  uint64_t finish(const unsigned char* tail, size_t n) {  // n < 8
    uint64_t t = 0;
    std::memcpy(&t, tail, n);
    return mix64(h ^ t);
  }
};
}  // namespace

uint64_t checksum64(const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  Checksum c(n);
  c.words(p, n / 8 * 8);
  return c.finish(p + n / 8 * 8, n % 8);
}

// The checksum of a file, read in 16 MiB chunks (never the whole file in memory).
uint64_t checksum_file(const std::string& path, size_t* size_out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  MESHLM_CHECK(in, path + ": cannot open");
  const size_t size = size_t(in.tellg());
  in.seekg(0);
  Checksum c(size);
  std::vector<unsigned char> buf(16u << 20);
  size_t left = size;
  while (left >= 8) {
    const size_t n = std::min(buf.size(), left / 8 * 8);
    in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(n));
    MESHLM_CHECK(in, path + ": read failed");
    c.words(buf.data(), n);
    left -= n;
  }
  in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(left));
  *size_out = size;
  return c.finish(buf.data(), left);
}

std::string checksum_hex(uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
  return buf;
}

}  // namespace meshlm
