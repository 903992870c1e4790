// Generation: the KV cache path (Model::decode, attention_decode) against recomputing the whole
// context for every token - the same greedy tokens, logits within fp32 rounding at every step,
// through and past a full context (the cache refilled) - for GPT-2 and grouped-query Llama;
// top-p and the stop token.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "support/fixtures.h"
#include "train/sample.h"

using namespace meshlm;

namespace {

// The test support's small models (L2 H4 C32; Llama with 2 kv heads), a 24-position context.
ModelConfig small(const std::string& arch) {
  ModelConfig m = arch == "llama" ? test::llama_model(2, 2) : test::sharded_model(2);
  m.vocab_size = 97;
  m.max_seq_len = 24;
  return m;
}

void same_greedy_tokens(const std::string& arch) {
  auto be = make_backend("cpu");
  Model model(small(arch), *be);
  model.init(7);
  SampleOptions opt;
  opt.tokens = 40;  // past max_seq_len 24: the window slides, the cache is refilled
  opt.temperature = 0;
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65};
  opt.kv_cache = false;
  const std::vector<int32_t> want = sample(model, prompt, opt);
  opt.kv_cache = true;
  const std::vector<int32_t> got = sample(model, prompt, opt);
  EXPECT_EQ(got, want) << arch;
  // Step by step, the logits themselves: a prefill of 5 tokens, then the cache's row, against
  // the full forward's last row.
  KvCache cache = model.make_kv_cache();
  std::vector<int32_t> seq;
  double worst = 0;
  for (int i = 0; i < 20; i++) {
    seq.push_back(int32_t((i * 37 + 11) % 97));
    if (i < 4) continue;
    const std::vector<float> step =
        i == 4 ? model.prefill(seq.data(), 5, cache) : model.decode(seq.back(), cache);
    model.forward(seq.data(), nullptr, 1, int64_t(seq.size()));
    const std::vector<float> full = model.logits_at(0, int64_t(seq.size()) - 1);
    double mx = 0, diff = 0;
    for (int64_t v = 0; v < 97; v++) {
      mx = std::max(mx, std::abs(double(full[size_t(v)])));
      diff = std::max(diff, std::abs(double(step[size_t(v)]) - double(full[size_t(v)])));
    }
    worst = std::max(worst, diff / mx);
  }
  // fp32 sums in another order: a few units of 2^-24 per reduction of <= 4C terms, over 2 layers.
  EXPECT_LT(worst, 1e-5) << arch;
  EXPECT_EQ(cache.length(), 20);
  EXPECT_THROW(model.prefill(seq.data(), 2, cache), Error);  // only into an empty cache
}

}  // namespace

TEST(Sample, KvCacheGivesTheSameGreedyTokensGpt2) { same_greedy_tokens("gpt2"); }
TEST(Sample, KvCacheGivesTheSameGreedyTokensLlama) { same_greedy_tokens("llama"); }

TEST(Sample, StopTokenAndTopP) {
  auto be = make_backend("cpu");
  Model model(small("gpt2"), *be);
  model.init(3);
  SampleOptions opt;
  opt.tokens = 30;
  opt.temperature = 0;
  const std::vector<int32_t> greedy = sample(model, {1, 2, 3}, opt);
  opt.stop_token = greedy[4];
  const std::vector<int32_t> stopped = sample(model, {1, 2, 3}, opt);
  ASSERT_LE(stopped.size(), 5u);
  EXPECT_EQ(stopped.back(), greedy[4]);
  // top-p this small keeps only the most likely token: sampling at any temperature is greedy.
  opt.stop_token = -1;
  opt.temperature = 1.0;
  opt.top_p = 1e-6;
  EXPECT_EQ(sample(model, {1, 2, 3}, opt), greedy);
  opt.top_p = 0;
  EXPECT_THROW(sample(model, {1, 2, 3}, opt), Error);
}

TEST(Sample, DecodeRefusesAFullCache) {
  auto be = make_backend("cpu");
  Model model(small("llama"), *be);
  model.init(1);
  KvCache cache = model.make_kv_cache();
  for (int i = 0; i < 24; i++) model.decode(i, cache);
  EXPECT_THROW(model.decode(0, cache), Error);
}
