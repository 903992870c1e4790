#include "train/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "train/zero_sync.h"

namespace meshlm {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class NoSync final : public GradSync {
 public:
  explicit NoSync(int64_t total) : total_(total) {}
  Zero1Shard shard() const override { return {0, total_}; }
  std::string describe() const override { return "no gradient reduction (dp 1)"; }

 private:
  int64_t total_;
};

// Buckets cut from the end of the flat buffer, all-reduced as backward finalizes them.
class BucketSync final : public GradSync {
 public:
  BucketSync(const Plan& plan, Mesh& mesh, Model& model, int64_t tied_end)
      : plan_(plan),
        total_(model.table().total()),
        tied_end_(tied_end),
        buckets_(mesh.dp(), model.backend(), total_, plan.bucket_elems(),
                 plan.grad_reduce) {}
  Zero1Shard shard() const override { return {0, total_}; }
  bool overlapped() const override { return plan_.overlap; }
  void begin_step(float* grads) override { buckets_.start(grads); }
  // Reduce buckets as they finish, except the tied embedding's, which the stages sum first.
  void grads_final_from(int64_t offset) override { buckets_.ready_from(std::max(offset, tied_end_)); }
  void finish(float*) override { buckets_.finish(); }
  double take_exposed_seconds() override {
    const double s = buckets_.exposed_seconds();
    buckets_.reset_timer();
    return s;
  }
  bool reports_exposed() const override { return true; }
  std::string describe() const override {
    char mb[32];
    std::snprintf(mb, sizeof mb, "%g", plan_.bucket_mb);
    return std::to_string(buckets_.count()) + " gradient buckets of " + mb + " MB, " + dtype_name(plan_.grad_reduce) +
           (plan_.overlap ? ", overlapped with backward" : ", after backward");
  }

 private:
  const Plan& plan_;
  int64_t total_, tied_end_;
  GradientBuckets buckets_;
};

// ZeRO-1: rank r owns [P r / dp, P (r+1) / dp) of the flat buffers.
class Zero1Sync final : public GradSync {
 public:
  Zero1Sync(const Plan& plan, Mesh& mesh, Model& model)
      : dp_(mesh.dp()),
        be_(model.backend()),
        total_(model.table().total()),
        chunk_(plan.bucket_elems()),
        shard_(Zero1Shard::of(total_, mesh.dp_rank(), mesh.shape().dp)) {}
  Zero1Shard shard() const override { return shard_; }
  // Each rank receives the sum of its own shard, chunk by chunk (bucket_mb each).
  void finish(float* grads) override { exposed_ += reduce_scatter_in_chunks(dp_, be_, grads, total_, chunk_); }
  // after backward, not overlapped: all of it exposed
  double take_exposed_seconds() override { return std::exchange(exposed_, 0.0); }
  bool reports_exposed() const override { return true; }
  ReduceOp norm_op() const override { return ReduceOp::sum; }  // the shards' sums add up
  // Every rank updated its shard of the masters; the ranks exchange the updated weights in the
  // compute dtype: the fp32 masters in fp32, else each rank rounds its shard to the 16-bit copy
  // and they exchange that (half the bytes), leaving the masters outside a shard stale.
  double refresh_weights(Model& model, const WeightRounding& rounding) override {
    const auto t0 = Clock::now();
    stale_ = all_gather_updated_weights(dp_, model, shard_, rounding);
    return since(t0);
  }
  void gather_masters(Model& model) override {
    if (!stale_) return;
    float* p = model.params().as<float>();
    dp_.all_gather(p + shard_.begin, p, zero1_counts(total_, dp_.size()), DType::fp32);
    stale_ = false;
  }
  void masters_refreshed() override { stale_ = false; }
  std::string describe() const override { return "ZeRO-1: Adam moments sharded, gradients reduce-scattered"; }

 private:
  Communicator& dp_;
  Backend& be_;
  int64_t total_, chunk_;
  Zero1Shard shard_;
  bool stale_ = false;
  double exposed_ = 0;
};

}  // namespace

bool all_gather_updated_weights(Communicator& dp, Model& model, const Zero1Shard& shard, const WeightRounding& rounding) {
  const std::vector<int64_t> counts = zero1_counts(model.table().total(), dp.size());
  if (model.dtype() == DType::fp32) {
    float* p = model.params().as<float>();
    dp.all_gather(p + shard.begin, p, counts, DType::fp32);
    return false;
  }
  model.update_compute_weights(rounding, shard.begin, shard.end);
  auto* w = model.compute_weights().as<uint16_t>();
  dp.all_gather(w + shard.begin, w, counts, model.dtype());
  return !model.residency().shard_masters;
}

double GradSync::refresh_weights(Model& model, const WeightRounding& rounding) {
  model.update_compute_weights(rounding);
  return 0;
}

std::unique_ptr<GradSync> GradSync::make(const Plan& plan, Mesh& mesh, Model& model, int64_t tied_end) {
  switch (plan.grad_sync) {
    case GradSyncKind::buckets: return std::make_unique<BucketSync>(plan, mesh, model, tied_end);
    case GradSyncKind::zero1: return std::make_unique<Zero1Sync>(plan, mesh, model);
    case GradSyncKind::zero2:
    case GradSyncKind::zero3: return make_sharded_sync(plan, mesh, model);
    case GradSyncKind::none: break;
  }
  return std::make_unique<NoSync>(model.table().total());
}

}  // namespace meshlm
