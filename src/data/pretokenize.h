// Pre-tokenization: GPT-2's (or another pattern, Llama 3's below). The text is split into pieces by the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (Unicode letters, numbers and white space, as OpenAI's encoder and tiktoken's r50k "gpt2"
// use it), and BPE never merges across pieces. Matching is PCRE2 with its JIT. Bytes that are
// not valid UTF-8 match no class; each maximal run of them becomes a piece of its own, so any
// byte string splits into pieces that concatenate back to it.
// One Pretokenizer per thread (PCRE2 match data is not shareable).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm {

extern const char* const kGpt2Pattern;
// Llama 3's (tiktoken's cl100k-style) pattern: case-insensitive contractions, a letter run with
// one leading non-letter, numbers in runs of at most three digits, punctuation runs that take
// their line breaks along, then white space as GPT-2's.
extern const char* const kLlama3Pattern;

// "gpt2" -> kGpt2Pattern, "llama3" -> kLlama3Pattern; any other text is taken as a regex itself.
std::string pattern_regex(const std::string& name_or_regex);
// The name of a known pattern's regex ("gpt2", "llama3"), or "" for another regex.
std::string pattern_name(const std::string& regex);

class Pretokenizer {
 public:
  // `pattern`: a name or a regex, as pattern_regex; a regex PCRE2 cannot compile throws.
  explicit Pretokenizer(const std::string& pattern = "gpt2");
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;
  // Appends the pieces of `text` (views into it) to `out`.
  void split(std::string_view text, std::vector<std::string_view>& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm
