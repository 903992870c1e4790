// Data parallelism over a flat fp32 gradient buffer (the model's grads(), P elements).
//
// GradientBuckets cut the buffer into buckets from its END (backward finalizes gradients from
// the end: see Model::backward_micro) of `bucket_elems` each. During the last micro-batch's backward,
// ready_from(offset) starts a non-blocking all-reduce of every bucket lying wholly in
// [offset, P), so communication overlaps the rest of backward; finish() starts what is left and
// waits for everything. Reductions run in fp32, or in bf16 (converted to a staging buffer and
// back). The result is the SUM over ranks (the trainer scales the loss by 1 / (dp * accum)).
//
// Zero1Shard is ZeRO-1's split of the same buffer: rank r owns [P r / dp, P (r+1) / dp), any P.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "parallel/communicator.h"

namespace meshlm {

class GradientBuckets {
 public:
  // grads and the bf16 staging buffers are `be`'s memory (the backend converts between them).
  GradientBuckets(Communicator& dp, Backend& be, int64_t total, int64_t bucket_elems, DType reduce_dtype);
  int64_t count() const { return int64_t(ranges_.size()); }
  void start(float* grads);
  void ready_from(int64_t offset);
  void finish();
  // Seconds finish() spent waiting for reductions still in flight (the communication that
  // backward did not hide), since the last reset.
  double exposed_seconds() const { return exposed_; }
  void reset_timer() { exposed_ = 0; }

 private:
  void launch(size_t k);
  Communicator& dp_;
  Backend& be_;
  DType dtype_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // [begin, end), from the end of the buffer
  std::vector<Tensor> staging_;                     // bf16 copies of the buckets
  std::vector<RequestPtr> requests_;
  size_t next_ = 0;
  float* grads_ = nullptr;
  double exposed_ = 0;
};

struct Zero1Shard {
  int64_t begin = 0, end = 0;
  static Zero1Shard of(int64_t total, int rank, int size) {
    return {total * rank / size, total * (rank + 1) / size};
  }
  int64_t size() const { return end - begin; }
};
// The per-rank element counts of the shards (for reduce_scatter / all_gather).
std::vector<int64_t> zero1_counts(int64_t total, int size);
// The per-rank counts of the part of each rank's shard inside [lo, hi) of the flat buffer.
std::vector<int64_t> zero1_counts_in(int64_t total, int size, int64_t lo, int64_t hi);

// ZeRO-1's reduce-scatter of the whole flat buffer (P = total elements of be's memory), run as
// reduce-scatters of about `chunk` elements each (every rank's shard contributing chunk / dp of
// them): afterwards this rank's shard of `grads` holds the sum over the ranks. Chunks bound what
// the exchange allocates (MPI's temporary buffers and a staging buffer: one chunk each, not the
// whole gradient). Returns the seconds it took.
double reduce_scatter_in_chunks(Communicator& dp, Backend& be, float* grads, int64_t total, int64_t chunk);

}  // namespace meshlm
