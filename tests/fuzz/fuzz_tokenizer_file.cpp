// libFuzzer target: the meshlm tokenizer-file parser. Any input must either load (and then
// encode/decode a fixed text losslessly) or be refused with meshlm::Error; nothing else.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "data/bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto t = meshlm::BpeTokenizer::parse_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const std::string text = "To be, or not to be:\n that is \xff\xfe the question. 123";
    if (t.decode(t.encode(text)) != text) std::abort();
  } catch (const meshlm::Error&) {
  }
  return 0;
}
