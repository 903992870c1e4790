// libFuzzer target: the tokenizer-file parsers, meshlm's format and Hugging Face's
// tokenizer.json. Any input must either load (and then encode/decode a fixed text losslessly)
// or be refused with meshlm::Error; nothing else.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "data/bpe.h"
#include "data/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string text = "To be, or not to be:\n that is \xff\xfe the question. 123";
  try {
    auto t = meshlm::BpeTokenizer::parse_json(input, "fuzz");
    if (t.decode(t.encode(text)) != text) std::abort();
  } catch (const meshlm::Error&) {
  }
  try {
    auto t = meshlm::parse_hf_tokenizer(input, "fuzz");
    if (t.decode(t.encode(text)) != text) std::abort();
  } catch (const meshlm::Error&) {
  }
  return 0;
}
