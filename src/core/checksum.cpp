#include "core/checksum.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

#include <openssl/evp.h>

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

namespace {

std::string hex_digest(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; i++) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

using DigestCtx = std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)>;

DigestCtx sha256_ctx() {
  DigestCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  MESHLM_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "sha256: libcrypto failed");
  return ctx;
}

}  // namespace

std::string sha256_hex(const void* data, size_t n) {
  DigestCtx ctx = sha256_ctx();
  EVP_DigestUpdate(ctx.get(), data, n);
  return hex_digest(ctx.get());
}

std::string sha256_file(const std::string& path, size_t* size_out) {
  std::ifstream in(path, std::ios::binary);
  MESHLM_CHECK(in, path + ": cannot open");
  DigestCtx ctx = sha256_ctx();
  std::vector<char> buf(size_t(16) << 20);
  size_t total = 0;
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const size_t n = size_t(in.gcount());
    total += n;
    if (n) EVP_DigestUpdate(ctx.get(), buf.data(), n);
  }
  MESHLM_CHECK(in.eof(), path + ": read failed");
  const std::string out = hex_digest(ctx.get());
  if (size_out) *size_out = total;
  return out;
}

}  // namespace meshlm
