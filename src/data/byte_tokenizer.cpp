#include "data/byte_tokenizer.h"

#include "core/error.h"

namespace meshlm {

std::vector<int32_t> ByteTokenizer::encode(const std::string& text) {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); i++) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) {
  std::string s(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); i++) {
    MESHLM_CHECK(ids[i] >= 0 && ids[i] < 256, "byte tokenizer: id " + std::to_string(ids[i]) +
                                                  " is not a byte");
    s[i] = char(ids[i]);
  }
  return s;
}

}  // namespace meshlm
