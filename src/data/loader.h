// The loader: memory-mapped shards read as one global stream of sequences, the same for every
// data-parallel layout.
//
// A split's shards (in name order) are cut into windows of T + 1 tokens starting every T
// tokens: window k of a shard holds tokens [kT, kT + T + 1) (inputs are the first T, targets
// the last T; consecutive windows overlap by one token, exactly llm.c's batch layout). The W
// windows of all shards, shard by shard, form one epoch. With shuffling, epoch e visits them in
// the order of a pseudo-random permutation keyed by (seed, e); without, in order. Epochs follow
// each other, so sequence n of the stream is window perm_{n / W}(n mod W).
//
// A global batch of Bg sequences is dealt out by rank: for dp ranks, each doing A accumulation
// steps of micro-batch mb (Bg = dp * A * mb), rank r's micro-batch a of step s is sequences
//   s * Bg + r * A * mb + a * mb + [0, mb).
// The loader's whole state is the number of sequences consumed, so a run saved at one dp size
// resumes at any other and reads exactly the sequences the uninterrupted run would have read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace meshlm {

struct LoaderState {
  int64_t sequences = 0;  // sequences of the global stream consumed so far
};

// A bijection of [0, n) keyed by a 64-bit key: a 4-round Feistel network on the smallest
// even-bit-width domain >= n, with cycle walking. O(1) memory for any n.
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key);
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t n_, key_;
  int half_bits_;
};

class DataLoader {
 public:
  // Maps every shard of `split` in `dir` and checks all token ids are < vocab_size.
  DataLoader(const std::string& dir, const std::string& split, int64_t T, int64_t vocab_size,
             bool shuffle = false, uint64_t seed = 0);

  int64_t windows_per_epoch() const { return windows_; }
  int64_t seq_len() const { return T_; }
  // Global window index (0 <= n, any epoch) of stream sequence n.
  int64_t window_of(int64_t n) const;
  // Fills inputs and targets (count, T) with stream sequences [first, first + count).
  void read(int64_t first, int64_t count, std::vector<int32_t>& inputs, std::vector<int32_t>& targets) const;

 private:
  std::vector<Shard> shards_;
  std::vector<int64_t> first_window_;  // global index of each shard's first window
  int64_t T_, windows_ = 0;
  bool shuffle_;
  uint64_t seed_;
};

// Which stream sequences a rank reads: see the header comment.
struct BatchPlan {
  int64_t dp = 1, rank = 0, accum = 1, micro = 1;
  int64_t global_batch() const { return dp * accum * micro; }
  // First sequence of micro-batch a of the step whose global batch starts at `step_first`.
  int64_t first(int64_t step_first, int64_t a) const { return step_first + (rank * accum + a) * micro; }
};

}  // namespace meshlm
