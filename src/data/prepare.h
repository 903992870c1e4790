// `meshlm prepare`: text files -> train and val token shards plus a manifest.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace meshlm {

struct PrepareOptions {
  std::string tokenizer = "bytes";  // only "bytes" here; BPE arrives with the data issue
  std::vector<std::string> inputs;  // files
  std::string output;               // directory
  double val_fraction = 0.1;        // the last fraction of the tokens goes to val
};

struct PrepareResult {
  int64_t train_tokens = 0, val_tokens = 0, vocab_size = 0;
};

PrepareResult prepare_shards(const PrepareOptions& opt);

}  // namespace meshlm
