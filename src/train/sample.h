// Autoregressive sampling from a model: temperature, top-k, top-p, a stop token, a seeded
// counter-based RNG. With the KV cache (the default) each new token is one row through the
// model, attending to the cached keys and values: time linear in the length generated. Without
// it each token is a forward over the whole context (quadratic), the reference the cache is
// tested against. Both see the same context: the last max_seq_len tokens (the prompt, and a
// full context, go through one forward that fills the cache).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace meshlm {

struct SampleOptions {
  int64_t tokens = 256;       // new tokens to generate
  double temperature = 0.8;   // 0: greedy (argmax)
  int64_t top_k = 0;          // 0: the whole vocabulary
  double top_p = 1.0;         // nucleus: the fewest most likely tokens whose probability reaches top_p
  int32_t stop_token = -1;    // end generation after this token (end-of-text); -1: never
  bool kv_cache = true;       // one row per new token through a KV cache (whole models on one rank)
  uint64_t seed = 1;
  int64_t vocab_limit = 0;    // sample only ids below this (the tokenizer's size); 0: V
};

// Generates after `prompt` (non-empty), calling on_token for each new token as it comes.
// The context is the last max_seq_len tokens.
std::vector<int32_t> sample(Model& model, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                            const std::function<void(int32_t)>& on_token = {});

}  // namespace meshlm
