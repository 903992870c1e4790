// The minimal sequential loader: step b of a split reads the window of B*T + 1 tokens starting
// at token b*B*T of the current shard (inputs are the first B*T, targets the last B*T);
// when a shard cannot supply a whole window it moves to the next shard, wrapping around
// (an epoch). Its whole state is (shard, position): checkpoint it to resume exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace meshlm {

struct LoaderState {
  int64_t shard = 0;     // index into the sorted shard list
  int64_t position = 0;  // first token of the next window
  int64_t epoch = 0;
};

class DataLoader {
 public:
  // Opens every shard of `split` in `dir`; throws if none can hold one window, or if a
  // token id is >= vocab_size.
  DataLoader(const std::string& dir, const std::string& split, int64_t B, int64_t T,
             int64_t vocab_size);
  // Fills inputs (B, T) and targets (B, T) with the next window and advances.
  void next(std::vector<int32_t>& inputs, std::vector<int32_t>& targets);
  void reset() { state_ = {}; }
  const LoaderState& state() const { return state_; }
  void set_state(const LoaderState& s);
  int64_t batches_per_epoch() const;

 private:
  std::vector<Shard> shards_;
  int64_t B_, T_;
  LoaderState state_;
  std::vector<int32_t> window_;
};

}  // namespace meshlm
