// GPT-2's pre-tokenization: the text is split into pieces by the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (Unicode letters, numbers and white space, as OpenAI's encoder and tiktoken's r50k "gpt2"
// use it), and BPE never merges across pieces. Matching is PCRE2 with its JIT. Bytes that are
// not valid UTF-8 match no class; each maximal run of them becomes a piece of its own, so any
// byte string splits into pieces that concatenate back to it.
// One Pretokenizer per thread (PCRE2 match data is not shareable).
#pragma once
#include <memory>
#include <string_view>
#include <vector>

namespace meshlm {

extern const char* const kGpt2Pattern;

class Pretokenizer {
 public:
  Pretokenizer();
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
