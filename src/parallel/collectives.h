// The tensor-parallel group's collectives as named conjugate pairs (Megatron's mappings): each
// has a forward and a backward, and layers call them by name, never the communicator. On a
// group of size 1 every one returns at once, so the same layer code runs unsharded.
//
//   pair                 forward                    backward                 where
//   copy                 identity                   all-reduce dx            entry of a column-parallel region
//   reduce               all-reduce y               identity                 exit of a row-parallel region
//   gather (sequence)    all-gather x's rows        reduce-scatter dx rows   entry, sequence parallel
//   scatter (sequence)   reduce-scatter y's rows    all-gather dy rows       exit, sequence parallel
//
// Activations are in the compute dtype; 16-bit ones are summed in fp32 and rounded once (the
// backend converts through an fp32 staging buffer). Row counts: n_part elements per rank,
// n_full = tp n_part for the whole. bytes() counts the payload each rank contributes (fp32 for
// sums, the dtype for gathers): the tensor-parallel traffic of the metrics line.
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "parallel/communicator.h"

namespace meshlm {

class TpCollectives {
 public:
  // `group` may be null (no tensor parallelism: a group of one).
  TpCollectives(Communicator* group, Backend& be, DType dt);
  int size() const { return size_; }
  int rank() const { return rank_; }
  bool active() const { return size_ > 1; }
  DType dtype() const { return dt_; }

  void copy_backward(void* dx, int64_t n) { all_reduce(dx, n); }
  void reduce_forward(void* y, int64_t n) { all_reduce(y, n); }
  void gather_forward(void* full, const void* part, int64_t n_part) { all_gather(full, part, n_part); }
  void gather_backward(void* dpart, const void* dfull, int64_t n_full) { reduce_scatter(dpart, dfull, n_full); }
  void scatter_forward(void* part, const void* full, int64_t n_full) { reduce_scatter(part, full, n_full); }
  void scatter_backward(void* dfull, const void* dpart, int64_t n_part) { all_gather(dfull, dpart, n_part); }

  // The sum over the group of a replicated parameter's partial gradients (fp32, n): the rows
  // of a sequence-parallel layernorm each give a part. Not counted in bytes().
  void sum_partial_grads(float* g, int64_t n);
  // Row-wise vectors of the vocabulary-parallel cross-entropy (fp32, n): max and sum.
  void max_rows(float* x, int64_t n);
  void sum_rows(float* x, int64_t n);

  int64_t bytes() const { return bytes_; }
  void reset_bytes() { bytes_ = 0; }
  void count_bytes(int64_t b) { bytes_ += b; }

 private:
  void all_reduce(void* buf, int64_t n);
  void all_gather(void* full, const void* part, int64_t n_part);
  void reduce_scatter(void* part, const void* full, int64_t n_full);
  float* staging(int64_t n);  // fp32, at least n elements, in the backend's memory

  Communicator* group_;
  Backend& be_;
  DType dt_;
  int size_ = 1, rank_ = 0;
  Tensor staging_;
  int64_t bytes_ = 0;
};

}  // namespace meshlm
