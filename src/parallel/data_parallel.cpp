#include "parallel/data_parallel.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace meshlm {

GradientBuckets::GradientBuckets(Communicator& dp, Backend& be, int64_t total, int64_t bucket_elems,
                                 DType reduce_dtype)
    : dp_(dp), be_(be), dtype_(reduce_dtype) {
  MESHLM_CHECK(bucket_elems > 0, "gradient buckets must hold at least one element");
  MESHLM_CHECK(reduce_dtype == DType::fp32 || reduce_dtype == DType::bf16, "gradients reduce in fp32 or bf16");
  for (int64_t end = total; end > 0; end -= bucket_elems) ranges_.push_back({std::max<int64_t>(0, end - bucket_elems), end});
  if (dtype_ == DType::bf16)
    for (const auto& r : ranges_) staging_.emplace_back(Shape{r.second - r.first}, DType::bf16, be_);
}

void GradientBuckets::start(float* grads) {
  MESHLM_CHECK(requests_.empty(), "GradientBuckets: start() while reductions are in flight");
  grads_ = grads;
  next_ = 0;
}

void GradientBuckets::launch(size_t k) {
  const auto [b, e] = ranges_[k];
  if (dtype_ == DType::fp32) {
    requests_.push_back(dp_.iall_reduce(grads_ + b, e - b, DType::fp32));
  } else {
    be_.convert(DType::bf16, staging_[k].data(), DType::fp32, grads_ + b, e - b);
    requests_.push_back(dp_.iall_reduce(staging_[k].data(), e - b, DType::bf16));
  }
}

void GradientBuckets::ready_from(int64_t offset) {
  MESHLM_CHECK(grads_ != nullptr, "GradientBuckets: ready_from() before start()");
  while (next_ < ranges_.size() && ranges_[next_].first >= offset) launch(next_++);
  // MPI advances non-blocking collectives inside MPI calls: poke the ones in flight.
  for (auto& r : requests_) r->test();
}

void GradientBuckets::finish() {
  MESHLM_CHECK(grads_ != nullptr, "GradientBuckets: finish() before start()");
  while (next_ < ranges_.size()) launch(next_++);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& r : requests_) r->wait();
  exposed_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (dtype_ == DType::bf16)
    for (size_t k = 0; k < ranges_.size(); k++)
      be_.convert(DType::fp32, grads_ + ranges_[k].first, DType::bf16, staging_[k].data(),
                  ranges_[k].second - ranges_[k].first);
  requests_.clear();
  grads_ = nullptr;
}

std::vector<int64_t> zero1_counts_in(int64_t total, int size, int64_t lo, int64_t hi) {
  std::vector<int64_t> c;
  for (int r = 0; r < size; r++) {
    const Zero1Shard s = Zero1Shard::of(total, r, size);
    c.push_back(std::max<int64_t>(0, std::min(hi, s.end) - std::max(lo, s.begin)));
  }
  return c;
}

// Round k takes the k-th sub-chunk of every rank's shard, packed in rank order into one staging
// buffer, so every rank reduces its share of every round (a contiguous range of the flat
// buffer would mostly lie in one rank's shard, leaving the others idle); each rank receives
// its sub-chunk straight into its shard.
double reduce_scatter_in_chunks(Communicator& dp, Backend& be, float* grads, int64_t total, int64_t chunk) {
  const auto t0 = std::chrono::steady_clock::now();
  const int n = dp.size();
  const int64_t sub = std::max<int64_t>(1, (chunk + n - 1) / n), largest = (total + n - 1) / n;
  Tensor staging({sub * n}, DType::fp32, be);  // (n, sub) one round's sub-chunks, rank order
  float* st = staging.as<float>();
  const Zero1Shard mine = Zero1Shard::of(total, dp.rank(), n);
  for (int64_t k = 0; k * sub < largest; k++) {
    std::vector<int64_t> counts;
    int64_t packed = 0;
    for (int r = 0; r < n; r++) {
      const Zero1Shard s = Zero1Shard::of(total, r, n);
      const int64_t lo = std::min(s.end, s.begin + k * sub), hi = std::min(s.end, lo + sub);
      if (hi > lo) be.copy(st + packed, grads + lo, size_t(hi - lo) * 4);
      counts.push_back(hi - lo);
      packed += hi - lo;
    }
    dp.reduce_scatter(st, grads + std::min(mine.end, mine.begin + k * sub), counts, DType::fp32);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int64_t> zero1_counts(int64_t total, int size) {
  std::vector<int64_t> c;
  for (int r = 0; r < size; r++) c.push_back(Zero1Shard::of(total, r, size).size());
  return c;
}

}  // namespace meshlm
