// Incremental BPE training: pair counts and, for each pair, the pieces it occurs in, are kept
// up to date as merges rewrite pieces, so each round costs only the pieces it touches. The
// most frequent pair comes from a max-heap with lazy deletion (stale entries are skipped).
#include "data/bpe_train.h"

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "data/pretokenize.h"

namespace meshlm {

namespace {

using Pair = uint64_t;  // (a << 32) | b
Pair make_pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct HeapEntry {
  int64_t count;
  Pair pair;
  // Max count first; on ties the smaller pair (smaller a, then smaller b) first.
  bool operator<(const HeapEntry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

}  // namespace

BpeTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  const int64_t n_specials = int64_t(opt.specials.size());
  MESHLM_CHECK(opt.vocab_size >= 256 + n_specials,
               "--vocab-size must be at least 256 + the special tokens (" +
                   std::to_string(256 + n_specials) + ")");
  // Distinct pieces and their counts.
  std::unordered_map<std::string_view, int64_t> counts;
  {
    Pretokenizer pre;
    std::vector<std::string_view> pieces;
    for (const auto& t : texts) {
      pieces.clear();
      pre.split(t, pieces);
      for (auto p : pieces) counts[p]++;
    }
  }
  std::vector<std::vector<int32_t>> words;  // each distinct piece as token ids
  std::vector<int64_t> freq;
  words.reserve(counts.size());
  for (const auto& [p, c] : counts) {
    std::vector<int32_t> w(p.size());
    for (size_t i = 0; i < p.size(); i++) w[i] = static_cast<unsigned char>(p[i]);
    words.push_back(std::move(w));
    freq.push_back(c);
  }
  // Deterministic order regardless of hash-map iteration: sort pieces by their bytes.
  std::vector<size_t> order(words.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return words[a] < words[b]; });
  {
    std::vector<std::vector<int32_t>> w2;
    std::vector<int64_t> f2;
    for (size_t i : order) {
      w2.push_back(std::move(words[i]));
      f2.push_back(freq[i]);
    }
    words.swap(w2);
    freq.swap(f2);
  }

  std::unordered_map<Pair, int64_t> pair_count;
  std::unordered_map<Pair, std::unordered_set<uint32_t>> where;
  for (uint32_t w = 0; w < words.size(); w++)
    for (size_t i = 0; i + 1 < words[w].size(); i++) {
      const Pair p = make_pair_key(words[w][i], words[w][i + 1]);
      pair_count[p] += freq[w];
      where[p].insert(w);
    }
  std::priority_queue<HeapEntry> heap;
  for (const auto& [p, c] : pair_count) heap.push({c, p});

  const int64_t want = opt.vocab_size - n_specials - 256;
  std::vector<std::pair<int32_t, int32_t>> merges;
  merges.reserve(size_t(want));
  while (int64_t(merges.size()) < want && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale
    if (top.count < 2) break;  // nothing repeats: further merges would memorise
    const int32_t a = int32_t(top.pair >> 32), b = int32_t(uint32_t(top.pair));
    const int32_t id = int32_t(256 + merges.size());
    merges.emplace_back(a, b);
    std::vector<uint32_t> touched(where[top.pair].begin(), where[top.pair].end());
    std::sort(touched.begin(), touched.end());
    std::unordered_map<Pair, int64_t> delta;
    for (uint32_t w : touched) {
      auto& seq = words[w];
      const int64_t f = freq[w];
      for (size_t i = 0; i + 1 < seq.size(); i++) delta[make_pair_key(seq[i], seq[i + 1])] -= f;
      std::vector<int32_t> out;
      out.reserve(seq.size());
      for (size_t i = 0; i < seq.size();) {
        if (i + 1 < seq.size() && seq[i] == a && seq[i + 1] == b) {
          out.push_back(id);
          i += 2;
        } else {
          out.push_back(seq[i++]);
        }
      }
      seq.swap(out);
      for (size_t i = 0; i + 1 < seq.size(); i++) {
        const Pair p = make_pair_key(seq[i], seq[i + 1]);
        delta[p] += f;
        where[p].insert(w);
      }
    }
    for (const auto& [p, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[p];
      c += d;
      if (c > 0) heap.push({c, p});
    }
    pair_count.erase(top.pair);
    where.erase(top.pair);
    if (opt.progress && (merges.size() % 256 == 0 || int64_t(merges.size()) == want))
      opt.progress(int64_t(merges.size()), want);
  }
  return BpeTokenizer::from_merges(merges, opt.specials);
}

}  // namespace meshlm
