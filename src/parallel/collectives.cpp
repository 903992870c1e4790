#include "parallel/collectives.h"

#include <vector>

#include "core/error.h"

namespace meshlm {

TpCollectives::TpCollectives(Communicator* group, Backend& be, DType dt) : group_(group), be_(be), dt_(dt) {
  if (group_) {
    size_ = group_->size();
    rank_ = group_->rank();
  }
}

float* TpCollectives::staging(int64_t n) {
  if (staging_.numel() < n) staging_ = Tensor({n}, DType::fp32, be_);
  return staging_.as<float>();
}

void TpCollectives::all_reduce(void* buf, int64_t n) {
  if (!active()) return;
  bytes_ += n * 4;  // the fp32 payload of the all-reduce
  if (dt_ == DType::fp32 || dt_ == DType::fp64) {
    MESHLM_CHECK(dt_ == DType::fp32, "tensor parallelism runs fp32 or 16-bit models");
    group_->all_reduce(buf, n, DType::fp32);
    return;
  }
  float* f = staging(n);  // 16-bit: summed in fp32, rounded once
  be_.convert(DType::fp32, f, dt_, buf, n);
  group_->all_reduce(f, n, DType::fp32);
  be_.convert(dt_, buf, DType::fp32, f, n);
}

void TpCollectives::all_gather(void* full, const void* part, int64_t n_part) {
  if (!active()) return;
  bytes_ += n_part * size_ * int64_t(dtype_size(dt_));
  group_->all_gather(part, full, std::vector<int64_t>(size_t(size_), n_part), dt_);
}

void TpCollectives::reduce_scatter(void* part, const void* full, int64_t n_full) {
  if (!active()) return;
  bytes_ += n_full * 4;
  const int64_t each = n_full / size_;
  const std::vector<int64_t> counts(size_t(size_), each);
  if (dt_ == DType::fp32) return group_->reduce_scatter(full, part, counts, DType::fp32);
  float* f = staging(n_full + each);  // 16-bit: summed in fp32, rounded once
  be_.convert(DType::fp32, f, dt_, full, n_full);
  group_->reduce_scatter(f, f + n_full, counts, DType::fp32);
  be_.convert(dt_, part, DType::fp32, f + n_full, each);
}

void TpCollectives::sum_partial_grads(float* g, int64_t n) {
  if (active()) group_->all_reduce(g, n, DType::fp32);
}

void TpCollectives::max_rows(float* x, int64_t n) {
  if (active()) group_->all_reduce(x, n, DType::fp32, ReduceOp::max);
}

void TpCollectives::sum_rows(float* x, int64_t n) {
  if (active()) group_->all_reduce(x, n, DType::fp32);
}

}  // namespace meshlm
