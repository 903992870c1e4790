// Small on-disk fixtures shared by the train tests.
#pragma once
#include <filesystem>
#include <string>

#include "model/config.h"

namespace meshlm::test {

// A small model: L2, H2, C16, T8 and the given vocabulary (pick one that is not a multiple
// of 128 to exercise the padding).
ModelConfig tiny_model(int64_t vocab_size);
// A fresh empty directory under the system temp dir.
std::filesystem::path fresh_dir(const std::string& name);
// Byte-level train/val shards from a repetitive pseudo-text of `bytes` bytes, in `dir`.
void make_byte_shards(const std::filesystem::path& dir, int64_t bytes);

}  // namespace meshlm::test
