// The byte-level tokenizer: token id = byte value, vocabulary 256. Lossless for any input.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace meshlm {

struct ByteTokenizer {
  static constexpr int64_t kVocabSize = 256;
  static std::vector<int32_t> encode(const std::string& text);
  static std::string decode(const std::vector<int32_t>& ids);  // ids outside [0, 256) throw
};

}  // namespace meshlm
