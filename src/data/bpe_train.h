// Training a byte-level BPE vocabulary (`meshlm tokenizer train`).
//
// The corpus is cut into pieces by the GPT-2 pattern and the distinct pieces are counted. Each
// piece starts as its bytes (tokens 0..255). Every round merges the adjacent token pair that
// occurs most often, counted over all pieces weighted by their frequency, into a new token.
// Ties are broken by the smaller first token id, then the smaller second token id, so training
// is deterministic. Rounds continue until vocab_size - (number of special tokens) tokens exist
// or no pair occurs twice. Special tokens take the ids after the merged ones.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/bpe.h"

namespace meshlm {

struct BpeTrainOptions {
  int64_t vocab_size = 4096;
  std::vector<std::string> specials = {"<|endoftext|>"};
  // Called now and then with (merges done, merges wanted).
  std::function<void(int64_t, int64_t)> progress;
};

BpeTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt);

}  // namespace meshlm
