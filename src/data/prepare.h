// `meshlm prepare`: text files -> llm.c token shards (train and val) plus manifest.json.
//
// Every input file is one document; directories contribute their regular files in name order;
// a .jsonl file holds one document per line, the string field `jsonl_key` of its JSON object.
// With a tokenizer that has <|endoftext|>, that token precedes each document (as llm.c's
// scripts do). Input is streamed in chunks cut only where GPT-2's pre-tokenization cannot
// reach across the cut (after a newline that follows a non-space and precedes a non-space),
// so the tokens are exactly those of encoding each document whole, and memory stays bounded.
// Chunks are encoded on all cores. The val split is the end of the input: the last
// `val_fraction` of its bytes, moved to the next safe cut. A tokenizer file is copied into the
// output directory as meshlm_tokenizer.json (tokenizer.json if it is Hugging Face's format), which the manifest then names (relative to it).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace meshlm {

struct PrepareOptions {
  std::string tokenizer = "bytes";  // bytes | gpt2 | a tokenizer directory or file
  std::vector<std::string> inputs;  // files and directories (*.jsonl: one document per record)
  std::string jsonl_key = "text";   // the field of a JSONL record that holds its document
  std::string output;               // directory
  double val_fraction = 0.1;
  int64_t shard_tokens = 100'000'000;  // tokens per shard file (llm.c uses 1e8)
  size_t chunk_bytes = 4u << 20;       // input read per thread per round
  // Called as input is consumed: (bytes done, bytes in all).
  std::function<void(int64_t, int64_t)> progress;
};

struct PrepareResult {
  int64_t train_tokens = 0, val_tokens = 0, vocab_size = 0, documents = 0, bytes = 0;
  std::vector<std::string> shards;
};

PrepareResult prepare_shards(const PrepareOptions& opt);

// nanoGPT's headerless train.bin / val.bin (uint16 token ids, no header) as llm.c shards with a
// manifest: each file goes to the split its name says (train or val); ids are checked against
// the tokenizer's vocabulary.
PrepareResult convert_headerless_tokens(const std::vector<std::string>& files, const std::string& tokenizer,
                                        const std::string& output);

// The largest p < n such that text can be cut at p without changing GPT-2 pre-tokenization
// (text[p-1] == '\n', text[p-2] and text[p] not white space), or 0 if there is none.
size_t safe_cut(const char* text, size_t n);

}  // namespace meshlm
