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

}  // namespace meshlm
