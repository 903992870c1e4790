// Byte-level BPE tokenizers: GPT-2's own (encoder.json + vocab.bpe, encoding exactly as
// tiktoken's "gpt2"), the ones `meshlm tokenizer train` makes (a JSON file, format below), and
// Hugging Face tokenizer.json files of byte-level BPE (data/hf_tokenizer.h).
//
// All work the same way: the text is cut into pieces by the pattern (pretokenize.h: GPT-2's,
// Llama 3's or a tokenizer.json's own); a piece that is a token is that token; otherwise
// each piece starts as its bytes, one token per byte, and the adjacent pair whose merged bytes
// have the lowest rank is merged until no merged pair has a rank. A token's rank is its id.
// Every byte has a token, so any byte string encodes, and decode(encode(x)) == x.
//
// meshlm's tokenizer file (JSON; a checkpoint carries it as meshlm_tokenizer.json, apart from
// Hugging Face's tokenizer.json):
//   {"format": "meshlm-bpe", "version": 1, "pattern": "gpt2" (or "llama3"),
//    "merges": [[a, b], ...],             merge i makes token 256 + i from tokens a and b
//    "special_tokens": {"<|endoftext|>": id}}   ids after the merged tokens
// Tokens 0..255 are the single bytes 0..255.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/pretokenize.h"

namespace meshlm {

class BpeTokenizer;
BpeTokenizer from_merges_bytes();  // the "bytes" tokenizer

class BpeTokenizer {
 public:
  // GPT-2's files, from a directory holding encoder.json and vocab.bpe.
  static BpeTokenizer load_gpt2(const std::string& dir);
  // A meshlm tokenizer file.
  static BpeTokenizer load_json(const std::string& path);
  // The same from the file's text; `name` is used in error messages.
  static BpeTokenizer parse_json(const std::string& text, const std::string& name);
  // From merges (token a, token b) in order, plus the special tokens' names.
  static BpeTokenizer from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges,
                                  const std::vector<std::string>& specials);
  // Any byte-level BPE: tokens[id] = bytes, ids [0, tokens.size() - n_specials) mergeable
  // (ranked by id, every single byte among them), the last n_specials special; merges (a, b)
  // in rank order, each making the token of a's bytes + b's. Checked; throws naming `name`.
  static BpeTokenizer from_vocab(const std::string& name, std::vector<std::string> tokens,
                                 std::vector<std::pair<int32_t, int32_t>> merges, int32_t n_specials,
                                 const std::string& pattern);
  void save_json(const std::string& path) const;  // meshlm format; not for GPT-2's (its merges are not 256 + i)

  // Ordinary text: special-token names in it are encoded as text, never as their ids.
  std::vector<int32_t> encode(std::string_view text);
  std::string decode(const std::vector<int32_t>& ids) const;  // throws on an unknown id
  int64_t vocab_size() const { return int64_t(tokens_.size()); }
  int32_t eot_id() const { return eot_; }  // <|endoftext|>, or -1
  bool is_special(int32_t id) const { return id >= first_special_; }
  const std::string& token_bytes(int32_t id) const { return tokens_.at(size_t(id)); }
  std::string name() const { return name_; }
  const std::string& pattern() const { return pattern_; }  // a name (gpt2, llama3) or a regex
  // The merges in rank order (GPT-2's vocab.bpe, a meshlm file's, a tokenizer.json's).
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  int32_t first_special() const { return first_special_; }

 private:
  explicit BpeTokenizer(const std::string& pattern = "gpt2");
  friend BpeTokenizer from_merges_bytes();
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void index();  // builds ranks_ from tokens_

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::string name_;
  std::vector<std::string> tokens_;                                        // id -> bytes
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ranks_;  // bytes -> id (mergeable)
  std::vector<std::pair<int32_t, int32_t>> merges_;                        // (a, b) in rank order
  std::string pattern_ = "gpt2";
  std::vector<std::string> specials_;
  int32_t eot_ = -1;
  int32_t first_special_ = 0;
  std::unique_ptr<Pretokenizer> pre_;
  std::vector<std::string_view> pieces_;
};

// A tokenizer by name: "bytes" (256 single-byte tokens, no merges, no special token), "gpt2"
// (GPT-2's files from $MESHLM_GPT2_DIR, else the copy in the source tree's data/gpt2), a
// directory holding encoder.json + vocab.bpe, or a meshlm tokenizer file.
// A tokenizer file is Hugging Face's tokenizer.json or meshlm's format, told apart by content.
BpeTokenizer load_tokenizer(const std::string& spec);

// The name a tokenizer file goes by inside a data or checkpoint directory: "tokenizer.json"
// for Hugging Face's format, "meshlm_tokenizer.json" for meshlm's, so the two never mix.
std::string tokenizer_file_name(const std::string& path);
// The tokenizer file a data or checkpoint directory holds ("" if none): meshlm_tokenizer.json,
// else tokenizer.json (earlier checkpoints kept meshlm's format under that name).
std::string tokenizer_file_in(const std::string& dir);

}  // namespace meshlm
