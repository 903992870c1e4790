// Small on-disk fixtures shared by the train tests.
#pragma once
#include <filesystem>
#include <string>

namespace meshlm::test {

// A fresh empty directory under the system temp dir.
std::filesystem::path fresh_dir(const std::string& name);
// Byte-level train/val shards from a repetitive pseudo-text of `bytes` bytes, in `dir`.
void make_byte_shards(const std::filesystem::path& dir, int64_t bytes);

}  // namespace meshlm::test
