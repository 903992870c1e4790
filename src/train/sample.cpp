#include "train/sample.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

namespace {

// The next token from logits (V of them meaningful): greedy, or temperature, top-k and top-p.
int32_t pick(const std::vector<float>& logits, int64_t V, const SampleOptions& opt, Rng& rng,
             std::vector<std::pair<float, int32_t>>& cand) {
  if (opt.temperature == 0) return int32_t(std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
  for (int64_t v = 0; v < V; v++) cand[size_t(v)] = {float(logits[size_t(v)] / opt.temperature), int32_t(v)};
  int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                    [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  const double mx = cand[0].first;
  double sum = 0;
  for (int64_t j = 0; j < k; j++) sum += std::exp(double(cand[size_t(j)].first) - mx);
  if (opt.top_p < 1) {  // the nucleus: cut k where the (sorted) probabilities reach top_p
    double acc = 0;
    int64_t keep = 0;
    while (keep < k && acc < opt.top_p * sum) acc += std::exp(double(cand[size_t(keep++)].first) - mx);
    k = std::max<int64_t>(1, keep);
    sum = acc;
  }
  const double r = rng.uniform() * sum;
  double acc = 0;
  for (int64_t j = 0; j < k; j++) {
    acc += std::exp(double(cand[size_t(j)].first) - mx);
    if (r < acc) return cand[size_t(j)].second;
  }
  return cand[size_t(k - 1)].second;
}

// The logits after the last token of seq: one decode step through the cache, or a forward
// over the window of the last max_seq_len tokens (which also fills an empty or full cache).
std::vector<float> next_logits(Model& model, const std::vector<int32_t>& seq, KvCache* cache) {
  if (cache && cache->length() > 0 && cache->length() < cache->capacity()) return model.decode(seq.back(), *cache);
  const int64_t T = std::min<int64_t>(int64_t(seq.size()), model.config().max_seq_len);
  const int32_t* window = seq.data() + seq.size() - size_t(T);
  if (!cache) {
    model.forward(window, nullptr, 1, T);
    return model.logits_at(0, T - 1);
  }
  cache->clear();
  return model.prefill(window, T, *cache);
}

}  // namespace

std::vector<int32_t> sample(Model& model, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                            const std::function<void(int32_t)>& on_token) {
  MESHLM_CHECK(!prompt.empty(), "sample: the prompt must hold at least one token");
  MESHLM_CHECK(opt.temperature >= 0, "--temperature must be >= 0");
  MESHLM_CHECK(opt.top_k >= 0, "--top-k must be >= 0");
  MESHLM_CHECK(opt.top_p > 0 && opt.top_p <= 1, "--top-p must be in (0, 1]");
  const int64_t V = opt.vocab_limit > 0 ? std::min(opt.vocab_limit, model.config().vocab_size)
                                        : model.config().vocab_size;
  std::optional<KvCache> cache;
  if (opt.kv_cache) cache.emplace(model.make_kv_cache());
  std::vector<int32_t> seq = prompt, out;
  Rng rng{opt.seed, 0};
  std::vector<std::pair<float, int32_t>> cand(static_cast<size_t>(V));
  for (int64_t i = 0; i < opt.tokens; i++) {
    const int32_t next = pick(next_logits(model, seq, cache ? &*cache : nullptr), V, opt, rng, cand);
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
    if (next == opt.stop_token) break;
  }
  return out;
}

}  // namespace meshlm
