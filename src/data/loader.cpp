#include "data/loader.h"

#include "core/error.h"

namespace meshlm {

DataLoader::DataLoader(const std::string& dir, const std::string& split, int64_t B, int64_t T,
                       int64_t vocab_size)
    : B_(B), T_(T) {
  MESHLM_CHECK(B > 0 && T > 0, "loader: batch size and sequence length must be positive");
  for (const auto& path : list_shards(dir, split)) {
    Shard s(path);
    MESHLM_CHECK(s.max_token() < vocab_size,
                 path + ": token id " + std::to_string(s.max_token()) +
                     " is >= the model's vocab_size " + std::to_string(vocab_size));
    if (s.size() >= B * T + 1) shards_.push_back(std::move(s));
  }
  MESHLM_CHECK(!shards_.empty(), dir + ": no '" + split + "' shard holds one batch of " +
                                     std::to_string(B * T + 1) + " tokens (B*T+1)");
  window_.resize(size_t(B * T + 1));
}

void DataLoader::next(std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  const int64_t need = B_ * T_ + 1;
  if (state_.position + need > shards_[state_.shard].size()) {
    state_.position = 0;
    if (++state_.shard == int64_t(shards_.size())) {
      state_.shard = 0;
      state_.epoch++;
    }
  }
  shards_[state_.shard].read(state_.position, need, window_.data());
  inputs.assign(window_.begin(), window_.end() - 1);
  targets.assign(window_.begin() + 1, window_.end());
  state_.position += B_ * T_;
}

void DataLoader::set_state(const LoaderState& s) {
  MESHLM_CHECK(s.shard >= 0 && s.shard < int64_t(shards_.size()) && s.position >= 0 &&
                   s.position <= shards_[s.shard].size(),
               "loader state (shard " + std::to_string(s.shard) + ", position " +
                   std::to_string(s.position) + ") does not fit this data directory");
  state_ = s;
}

int64_t DataLoader::batches_per_epoch() const {
  int64_t n = 0;
  for (const auto& s : shards_) n += (s.size() - 1) / (B_ * T_);
  return n;
}

}  // namespace meshlm
