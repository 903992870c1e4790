#include "data/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace meshlm {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string pattern_regex(const std::string& name_or_regex) {
  if (name_or_regex == "gpt2") return kGpt2Pattern;
  if (name_or_regex == "llama3") return kLlama3Pattern;
  return name_or_regex;
}

std::string pattern_name(const std::string& regex) {
  if (regex == kGpt2Pattern || regex == "gpt2") return "gpt2";
  if (regex == kLlama3Pattern || regex == "llama3") return "llama3";
  return "";
}

struct Pretokenizer::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_data* match = nullptr;
};

Pretokenizer::Pretokenizer(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  const std::string regex = pattern_regex(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  // UTF: the subject is UTF-8; UCP: \s and friends use Unicode properties (as Python's regex
  // module and tiktoken do); MATCH_INVALID_UTF: invalid sequences simply never match.
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.c_str()), regex.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error("pre-tokenization pattern does not compile at offset " + std::to_string(offset) + ": " +
                reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if absent
  impl_->match = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
}

Pretokenizer::~Pretokenizer() {
  pcre2_match_data_free(impl_->match);
  pcre2_code_free(impl_->code);
}

void Pretokenizer::split(std::string_view text, std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), pos, 0, impl_->match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {  // only invalid UTF-8 remains: one piece
      out.push_back(text.substr(pos));
      return;
    }
    MESHLM_CHECK(rc > 0, "pre-tokenizer: PCRE2 match error " + std::to_string(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(impl_->match);
    if (ov[0] > pos) out.push_back(text.substr(pos, ov[0] - pos));  // skipped invalid bytes
    if (ov[1] == ov[0]) {  // the pattern cannot match empty; guard against a loop anyway
      out.push_back(text.substr(ov[0], 1));
      pos = ov[0] + 1;
      continue;
    }
    out.push_back(text.substr(ov[0], ov[1] - ov[0]));
    pos = ov[1];
  }
}

}  // namespace meshlm
