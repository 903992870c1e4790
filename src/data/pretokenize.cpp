#include "data/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace meshlm {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Pretokenizer::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_data* match = nullptr;
};

Pretokenizer::Pretokenizer() : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  // UTF: the subject is UTF-8; UCP: \s and friends use Unicode properties (as Python's regex
  // module and tiktoken do); MATCH_INVALID_UTF: invalid sequences simply never match.
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  MESHLM_CHECK(impl_->code, "GPT-2 pattern failed to compile (PCRE2 error " + std::to_string(err) + ")");
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
