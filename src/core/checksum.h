// A fast 64-bit checksum (not cryptographic) for detecting truncated or modified files:
// checkpoints and shard manifests record it for every file they write.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace meshlm {

uint64_t checksum64(const void* data, size_t n);
// The checksum of a whole file, read in 16 MiB chunks; its size goes to *size_out.
uint64_t checksum_file(const std::string& path, size_t* size_out);
std::string checksum_hex(uint64_t x);  // 16 lowercase hex digits

// SHA-256 (OpenSSL's libcrypto) of a whole file as 64 lowercase hex digits, what `sha256sum`
// prints: checkpoint files (format 2) and data shards record it, so a user can check them with
// standard tools. Its size goes to *size_out.
std::string sha256_file(const std::string& path, size_t* size_out);
std::string sha256_hex(const void* data, size_t n);

}  // namespace meshlm
