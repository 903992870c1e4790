// libFuzzer target: GPT-2 encode and decode. Any byte string must round-trip through
// encode/decode exactly; the same bytes read as int32 ids must decode or be refused with
// meshlm::Error.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static meshlm::BpeTokenizer tok = meshlm::load_tokenizer("gpt2");
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (tok.decode(tok.encode(text)) != text) std::abort();
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  try {
    (void)tok.decode(ids);
  } catch (const meshlm::Error&) {
  }
  return 0;
}
