#include "train/zero_sync.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>

#include "core/error.h"

namespace meshlm {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Reused buffers: a step takes and gives back windows of the same few sizes.
class WindowPool {
 public:
  explicit WindowPool(Backend& be) : be_(be) {}
  Tensor take(int64_t n, DType dt) {
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->dtype() == dt && it->numel() >= n && (best == free_.end() || it->numel() < best->numel())) best = it;
    if (best == free_.end()) {
      Tensor t({std::max<int64_t>(n, 1)}, dt, be_);
      bytes_ += int64_t(t.nbytes());
      return t;
    }
    Tensor t = std::move(*best);
    free_.erase(best);
    return t;
  }
  void give(Tensor t) {
    if (t.numel() > 0) free_.push_back(std::move(t));
  }
  int64_t bytes() const { return bytes_; }  // everything the pool ever allocated (held or free)

 private:
  Backend& be_;
  std::vector<Tensor> free_;
  int64_t bytes_ = 0;
};

// A range of the flat buffers gathered and reduced as one: the tied parameter, or the
// parameters of one unit (or of fsdp_unit consecutive blocks).
struct Segment {
  int64_t lo = 0, hi = 0;
  bool tied = false;
  // ZeRO-3: the gathered weights
  enum class W { absent, gathering, resident } w = W::absent;
  Tensor weights;
  RequestPtr gather;
  // the gradient window of the micro-batch's backward, and its reduce-scatter in flight
  bool grad_open = false;
  Tensor grads, send16, recv;
  RequestPtr reduce;
};

class ShardedSync final : public GradSync {
 public:
  ShardedSync(const Plan& plan, Mesh& mesh, Model& model)
      : plan_(plan),
        stage_(plan.zero_stage()),
        dp_(mesh.dp()),
        be_(model.backend()),
        model_(model),
        w_(model.weights()),
        total_(model.table().total()),
        shard_(Zero1Shard::of(total_, mesh.dp_rank(), mesh.shape().dp)),
        pool_(model.backend()) {
    build_segments();
    if (w_.residency().window_grads || w_.residency().window_weights) model.set_residency_hooks(this);
  }
  ~ShardedSync() override {
    model_.set_residency_hooks(nullptr);
    drain();
  }
  Zero1Shard shard() const override { return shard_; }
  ReduceOp norm_op() const override { return ReduceOp::sum; }
  bool reports_exposed() const override { return true; }
  double take_exposed_seconds() override {
    const double s = reduce_wait_ + gather_wait_;
    reduce_wait_ = 0;
    return s;
  }
  double take_gather_wait_seconds() override {
    const double s = gather_wait_;
    gather_wait_ = 0;
    return s;
  }
  int64_t working_set_bytes() const override { return pool_.bytes(); }

  void before_forward(const UnitRef& u) override {
    if (!w_.residency().window_weights) return;
    const size_t s = segment_of(u.name);
    if (tied_) ensure(0);
    ensure(s);
    keep_only(s, s + 1 < segs_.size() ? s + 1 : s);
    if (plan_.overlap && s + 1 < segs_.size()) start_gather(s + 1);
    poke();
  }
  void before_backward(const UnitRef& u) override {
    const size_t s = segment_of(u.name);
    if (w_.residency().window_weights) {
      if (tied_) ensure(0);
      ensure(s);
      const size_t prev = s > first_own() ? s - 1 : s;
      keep_only(s, prev);
      if (plan_.overlap && prev != s) start_gather(prev);
    }
    if (w_.residency().window_grads) {
      if (tied_) open_grads(0);
      open_grads(s);
    }
    poke();
  }
  // Every open window at or past `offset` is final: reduce it (the tied one with the rest at 0).
  void grads_final_from(int64_t offset) override {
    if (!w_.residency().window_grads) return;
    for (size_t k = segs_.size(); k-- > 0;)
      if (segs_[k].grad_open && (segs_[k].tied ? offset == 0 : segs_[k].lo >= offset)) start_reduce(k);
    // At most kInFlight windows reducing: the oldest completed first, so the windows held stay
    // a few units' worth (the memory ZeRO-2 exists to save), not the whole gradient.
    while (reducing_.size() > kInFlight) complete_reduce(reducing_.front());
    poke();
  }
  static constexpr size_t kInFlight = 2;

  void finish(float* grads) override {
    if (w_.residency().window_grads) return drain();
    // whole gradients held: ZeRO-1's reduce-scatter, chunk by chunk, into the shard in place
    reduce_wait_ += reduce_scatter_in_chunks(dp_, be_, grads, total_, plan_.bucket_elems());
  }

  double refresh_weights(Model& model, const WeightRounding& rounding) override {
    const auto t0 = Clock::now();
    if (stage_ == 3) {  // the shard's compute copy re-rounded; every gathered window is stale
      model.update_compute_weights(rounding);
      for (size_t k = 0; k < segs_.size(); k++) release(k);
      return 0;
    }
    all_gather_updated_weights(dp_, model, shard_, rounding);  // the masters are the shard: none stale
    return since(t0);
  }

  std::string describe() const override {
    const WeightResidency& r = w_.residency();
    std::string s = "ZeRO-" + std::to_string(stage_) + ": Adam moments";
    s += r.shard_masters ? ", fp32 masters" : "";
    s += r.window_grads ? ", gradients" : "";
    s += r.window_weights ? ", weights" : "";
    s += " sharded over " + std::to_string(dp_.size()) + " ranks; ";
    s += r.window_grads ? "gradients reduce-scattered unit by unit" + std::string(r.window_weights ? "" : " during backward")
                        : "whole gradients reduce-scattered after the last micro-batch";
    if (r.window_weights)
      s += ", weights gathered in " + std::to_string(segs_.size() - (tied_ ? 1 : 0)) + " units" +
           (plan_.overlap ? " (the next prefetched)" : " (no prefetch)") + " in " + dtype_name(model_.dtype());
    return s;
  }

 private:
  void build_segments();
  size_t segment_of(const std::string& unit) const {
    auto it = unit_seg_.find(unit);
    MESHLM_CHECK(it != unit_seg_.end(), "ZeRO: unknown unit " + unit);
    return it->second;
  }
  size_t first_own() const { return tied_ ? 1 : 0; }
  std::vector<int64_t> counts(const Segment& s) const { return zero1_counts_in(total_, dp_.size(), s.lo, s.hi); }
  int64_t mine_lo(const Segment& s) const { return std::max(s.lo, shard_.begin); }
  void start_gather(size_t k);
  void ensure(size_t k);
  void release(size_t k);
  void keep_only(size_t a, size_t b);
  void open_grads(size_t k);
  void start_reduce(size_t k);
  void complete_reduce(size_t k);
  void drain();
  void poke();
  void map(Weights::View v, const Segment& s, void* data) {
    if (s.hi > s.lo) w_.map(v, s.lo, s.hi, data);
  }
  void unmap(Weights::View v, const Segment& s) {
    if (s.hi > s.lo) w_.unmap(v, s.lo);
  }

  const Plan& plan_;
  const int stage_;
  Communicator& dp_;
  Backend& be_;
  Model& model_;
  Weights& w_;
  int64_t total_;
  Zero1Shard shard_;
  WindowPool pool_;
  std::vector<Segment> segs_;
  std::map<std::string, size_t> unit_seg_;
  std::deque<size_t> reducing_;  // segments whose reduce-scatter is in flight, oldest first
  bool tied_ = false;
  double reduce_wait_ = 0, gather_wait_ = 0;
};

void ShardedSync::build_segments() {
  const int64_t tied = model_.tied_elems();
  if (tied > 0) {
    tied_ = true;
    segs_.push_back({0, tied, true});
  }
  int64_t blocks_in_unit = 0;
  for (const Model::UnitSpan& u : model_.unit_spans()) {
    const bool block = is_block_unit(u.name);
    const bool join = block && blocks_in_unit > 0 && blocks_in_unit < plan_.fsdp_unit && !segs_.back().tied;
    if (join) {
      segs_.back().hi = u.hi;
    } else {
      segs_.push_back({u.lo, u.hi, false});
      blocks_in_unit = 0;
    }
    blocks_in_unit = block ? blocks_in_unit + 1 : 0;
    unit_seg_[u.name] = segs_.size() - 1;
  }
}

void ShardedSync::start_gather(size_t k) {
  Segment& s = segs_[k];
  if (s.w != Segment::W::absent) return;
  const int64_t n = s.hi - s.lo;
  s.weights = pool_.take(n, model_.dtype());
  const std::vector<int64_t> c = counts(s);
  const void* send = c[size_t(dp_.rank())] > 0 ? w_.compute_at(mine_lo(s)) : s.weights.data();
  s.gather = dp_.iall_gather(send, s.weights.data(), c, model_.dtype());
  s.w = Segment::W::gathering;
}

void ShardedSync::ensure(size_t k) {
  Segment& s = segs_[k];
  if (s.w == Segment::W::resident) return;
  start_gather(k);
  const auto t0 = Clock::now();
  s.gather->wait();
  gather_wait_ += since(t0);
  s.gather.reset();
  s.w = Segment::W::resident;
  map(Weights::View::weights, s, s.weights.data());
}

void ShardedSync::release(size_t k) {
  Segment& s = segs_[k];
  if (s.w == Segment::W::absent) return;
  if (s.w == Segment::W::gathering) s.gather->wait();  // the buffer is MPI's until then
  if (s.w == Segment::W::resident) unmap(Weights::View::weights, s);
  s.gather.reset();
  pool_.give(std::move(s.weights));
  s.w = Segment::W::absent;
}

// Releases every gathered unit except a and b (and the tied one).
void ShardedSync::keep_only(size_t a, size_t b) {
  for (size_t k = first_own(); k < segs_.size(); k++)
    if (k != a && k != b) release(k);
}

void ShardedSync::open_grads(size_t k) {
  Segment& s = segs_[k];
  if (s.grad_open) return;
  if (s.reduce) complete_reduce(k);  // the previous micro-batch's, still in flight
  const int64_t n = s.hi - s.lo;
  s.grads = pool_.take(n, DType::fp32);
  be_.zero(s.grads.data(), size_t(n) * 4);
  map(Weights::View::grads, s, s.grads.data());
  s.grad_open = true;
}

void ShardedSync::start_reduce(size_t k) {
  Segment& s = segs_[k];
  unmap(Weights::View::grads, s);
  s.grad_open = false;
  const int64_t n = s.hi - s.lo;
  const std::vector<int64_t> c = counts(s);
  const DType dt = plan_.grad_reduce;
  s.recv = pool_.take(c[size_t(dp_.rank())], dt);
  const void* send = s.grads.data();
  if (dt != DType::fp32) {
    s.send16 = pool_.take(n, dt);
    be_.convert(dt, s.send16.data(), DType::fp32, s.grads.data(), n);
    send = s.send16.data();
  }
  s.reduce = dp_.ireduce_scatter(send, s.recv.data(), c, dt);
  reducing_.push_back(k);
}

// This rank's part of the reduced window added into its gradient shard; the buffers returned.
void ShardedSync::complete_reduce(size_t k) {
  Segment& s = segs_[k];
  const auto t0 = Clock::now();
  s.reduce->wait();
  reduce_wait_ += since(t0);
  s.reduce.reset();
  reducing_.erase(std::find(reducing_.begin(), reducing_.end(), k));
  const int64_t mine = counts(s)[size_t(dp_.rank())];
  if (mine > 0) {
    const void* part = s.recv.data();
    Tensor f32;
    if (plan_.grad_reduce != DType::fp32) {
      f32 = pool_.take(mine, DType::fp32);
      be_.convert(DType::fp32, f32.data(), plan_.grad_reduce, s.recv.data(), mine);
      part = f32.data();
    }
    be_.accumulate(DType::fp32, model_.grad_at(mine_lo(s)), part, mine);
    pool_.give(std::move(f32));
  }
  pool_.give(std::move(s.recv));
  pool_.give(std::move(s.send16));
  pool_.give(std::move(s.grads));
}

// Completes every reduction in flight, in the order they started (a window still open, left
// by a backward cut short, is dropped).
void ShardedSync::drain() {
  for (Segment& s : segs_)
    if (s.grad_open) {
      unmap(Weights::View::grads, s);
      s.grad_open = false;
      pool_.give(std::move(s.grads));
    }
  while (!reducing_.empty()) complete_reduce(reducing_.front());
}

// MPI advances non-blocking collectives inside MPI calls: test the ones in flight, and take
// in the reductions that completed (in the order they started).
void ShardedSync::poke() {
  for (Segment& s : segs_)
    if (s.gather) s.gather->test();
  while (!reducing_.empty() && segs_[reducing_.front()].reduce->test()) complete_reduce(reducing_.front());
}

}  // namespace

WeightResidency zero_residency(const Plan& plan, DType compute, int64_t total, int dp_rank) {
  WeightResidency r;
  const int stage = plan.zero_stage();
  if (stage < 2) return r;
  const Zero1Shard s = Zero1Shard::of(total, dp_rank, plan.mesh.dp);
  r.begin = s.begin;
  r.end = s.end;
  const bool lowp = compute == DType::bf16 || compute == DType::fp16;
  r.window_weights = stage == 3;
  r.shard_masters = stage == 3 || lowp;
  r.window_grads = !plan.hold_whole_grads;
  return r;
}

std::unique_ptr<GradSync> make_sharded_sync(const Plan& plan, Mesh& mesh, Model& model) {
  return std::make_unique<ShardedSync>(plan, mesh, model);
}

}  // namespace meshlm
