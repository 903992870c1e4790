#include "data/loader.h"

#include <algorithm>
#include <climits>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

Permutation::Permutation(uint64_t n, uint64_t key) : n_(n), key_(key), half_bits_(1) {
  while ((uint64_t(1) << (2 * half_bits_)) < n) half_bits_++;
}

uint64_t Permutation::operator()(uint64_t i) const {
  const uint64_t mask = (uint64_t(1) << half_bits_) - 1;
  uint64_t x = i;
  do {  // cycle walking: re-encrypt until the value falls inside [0, n)
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
      const uint64_t f = mix64(key_ ^ (round << 56) ^ right) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

DataLoader::DataLoader(const std::string& dir, const std::string& split, int64_t T, int64_t vocab_size,
                       bool shuffle, uint64_t seed)
    : T_(T), shuffle_(shuffle), seed_(seed) {
  MESHLM_CHECK(T > 0, "loader: sequence length must be positive");
  for (const auto& path : list_shards(dir, split)) {
    Shard s(path);
    const int64_t bad = s.first_token_at_least(int32_t(std::min<int64_t>(vocab_size, INT32_MAX)));
    MESHLM_CHECK(bad < 0, path + ": token id " + std::to_string(bad < 0 ? 0 : s.token(bad)) + " at byte " +
                              std::to_string(s.byte_offset(bad)) + " is >= the model's vocab_size " +
                              std::to_string(vocab_size));
    const int64_t w = s.size() > T ? (s.size() - 1) / T : 0;
    if (w == 0) continue;  // too short for one window
    first_window_.push_back(windows_);
    windows_ += w;
    shards_.push_back(std::move(s));
  }
  MESHLM_CHECK(windows_ > 0, dir + ": no '" + split + "' shard holds one sequence of " +
                                 std::to_string(T + 1) + " tokens (T+1)");
}

int64_t DataLoader::window_of(int64_t n) const {
  const int64_t epoch = n / windows_, i = n % windows_;
  if (!shuffle_) return i;
  return int64_t(Permutation(uint64_t(windows_), mix64(seed_ ^ mix64(uint64_t(epoch))))(uint64_t(i)));
}

void DataLoader::read(int64_t first, int64_t count, std::vector<int32_t>& inputs,
                      std::vector<int32_t>& targets) const {
  MESHLM_CHECK(first >= 0 && count >= 0, "loader: negative sequence index");
  inputs.resize(size_t(count * T_));
  targets.resize(size_t(count * T_));
  std::vector<int32_t> window(size_t(T_ + 1));
  for (int64_t j = 0; j < count; j++) {
    const int64_t w = window_of(first + j);
    const size_t s = size_t(std::upper_bound(first_window_.begin(), first_window_.end(), w) -
                            first_window_.begin() - 1);
    shards_[s].read((w - first_window_[s]) * T_, T_ + 1, window.data());
    std::copy(window.begin(), window.end() - 1, inputs.begin() + j * T_);
    std::copy(window.begin() + 1, window.end(), targets.begin() + j * T_);
  }
}

}  // namespace meshlm
