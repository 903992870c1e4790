#include "train/sample.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

std::vector<int32_t> sample(Model& model, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                            const std::function<void(int32_t)>& on_token) {
  MESHLM_CHECK(!prompt.empty(), "sample: the prompt must hold at least one token");
  MESHLM_CHECK(opt.temperature >= 0, "--temperature must be >= 0");
  MESHLM_CHECK(opt.top_k >= 0, "--top-k must be >= 0");
  MESHLM_CHECK(opt.top_p > 0 && opt.top_p <= 1, "--top-p must be in (0, 1]");
  const int64_t V = opt.vocab_limit > 0 ? std::min(opt.vocab_limit, model.config().vocab_size)
                                        : model.config().vocab_size;
  const int64_t maxT = model.config().max_seq_len;
  std::vector<int32_t> seq = prompt, out;
  Rng rng{opt.seed, 0};
  std::vector<std::pair<float, int32_t>> cand(V);
  for (int64_t i = 0; i < opt.tokens; i++) {
    const int64_t T = std::min<int64_t>(int64_t(seq.size()), maxT);
    model.forward(seq.data() + seq.size() - T, nullptr, 1, T);
    std::vector<float> logits = model.logits_at(0, T - 1);
    int32_t next;
    if (opt.temperature == 0) {
      next = int32_t(std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
    } else {
      for (int64_t v = 0; v < V; v++) cand[v] = {float(logits[v] / opt.temperature), int32_t(v)};
      int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
      std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                        [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
      double mx = cand[0].first, sum = 0;
      for (int64_t j = 0; j < k; j++) sum += std::exp(double(cand[j].first) - mx);
      if (opt.top_p < 1) {  // the nucleus: cut k where the (sorted) probabilities reach top_p
        double acc = 0;
        int64_t keep = 0;
        while (keep < k && acc < opt.top_p * sum) acc += std::exp(double(cand[size_t(keep++)].first) - mx);
        k = std::max<int64_t>(1, keep);
        sum = acc;
      }
      double r = rng.uniform() * sum, acc = 0;
      next = cand[k - 1].second;
      for (int64_t j = 0; j < k; j++) {
        acc += std::exp(double(cand[j].first) - mx);
        if (r < acc) {
          next = cand[j].second;
          break;
        }
      }
    }
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
    if (next == opt.stop_token) break;
  }
  return out;
}

}  // namespace meshlm
