// Hugging Face's tokenizer.json (the `tokenizers` library's file) for byte-level BPE, both
// ways. What meshlm can express, and so reads and writes:
//   model           {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...]}
//                   tokens spelled in GPT-2's byte alphabet (bytes_to_unicode); no dropout,
//                   no unknown token, no subword prefix or suffix, no byte fallback
//   pre_tokenizer   {"type": "ByteLevel", "use_regex": true} (GPT-2's pattern), or a Sequence of
//                   {"type": "Split", "pattern": {"Regex": P}, "behavior": "Isolated"} and
//                   {"type": "ByteLevel", "use_regex": false} (Llama 3's pattern, or any P PCRE2
//                   compiles); add_prefix_space false; no normalizer
//   added_tokens    special tokens, after every ordinary id
// Merges must make tokens in increasing id order: meshlm ranks a token by its id (tiktoken's
// rule), which HF's merge priority then agrees with (true of GPT-2's and Llama 3's files).
// Anything else is refused by name rather than read into a tokenizer that encodes otherwise.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/bpe.h"

namespace meshlm {

// The tokenizer.json of a tokenizer (GPT-2's own from encoder.json + vocab.bpe gives GPT-2's
// published vocabulary and merges).
nlohmann::ordered_json hf_tokenizer_json(const BpeTokenizer& tok);
// Reads a tokenizer.json; `name` labels errors (the path).
BpeTokenizer parse_hf_tokenizer(const std::string& text, const std::string& name);
BpeTokenizer load_hf_tokenizer(const std::string& path);
// GPT-2's byte alphabet (bytes_to_unicode), in which encoder.json, vocab.bpe and tokenizer.json
// spell tokens: printable Latin-1 bytes as themselves, the other 68 as code points 256, 257, ...
std::vector<int32_t> gpt2_byte_of_codepoint();      // code point (< 512) -> byte, or -1
std::string gpt2_spell(const std::string& bytes);   // a token's bytes as their spelling (UTF-8)
// The bytes a spelling stands for; false when the text is not in the alphabet.
bool gpt2_unspell(const std::string& text, const std::vector<int32_t>& byte_of, std::string& out);

// True when the JSON text is a Hugging Face tokenizer.json (it has "model"), not meshlm's file.
bool is_hf_tokenizer_json(const nlohmann::json& j);

}  // namespace meshlm
