#include "model/layer.h"

#include <algorithm>

#include "core/error.h"

namespace meshlm {

size_t ActivationPlanner::take(size_t& end, int64_t n) {
  const size_t o = end;
  end += (size_t(n) + 31) / 32 * 32;  // keep every buffer 64-byte aligned (32 elements of >= 2 bytes)
  return o;
}

Act ActivationPlanner::keep(const std::string& key, int64_t n, Keep k, bool stat) {
  if (!kept(k, recompute_)) return scratch(key, n, stat);  // rebuilt in backward
  return Act{take(stat ? saved_stats_ : saved_, n), stat, false, n};
}

Act ActivationPlanner::scratch(const std::string& key, int64_t n, bool stat) {
  auto it = shared_.find(key);
  if (it != shared_.end()) {
    MESHLM_CHECK(it->second.second == n && it->second.first.stat == stat,
                 "activation plan: scratch '" + key + "' asked for with two sizes");
    return it->second.first;
  }
  const Act a{take(stat ? scratch_stats_ : scratch_, n), stat, true, n};
  shared_.emplace(key, std::make_pair(a, n));
  return a;
}

Activations::Activations(const ActivationPlanner& plan, int slots, Backend& be, DType dt, DType stat_dt)
    : saved_(plan.saved_elems(false)),
      saved_stats_(plan.saved_elems(true)),
      esz_(dtype_size(dt)),
      stat_esz_(dtype_size(stat_dt)),
      slots_(slots) {
  acts_ = Tensor({int64_t(size_t(slots) * saved_ + plan.scratch_elems(false))}, dt, be);
  stats_ = Tensor({int64_t(size_t(slots) * saved_stats_ + plan.scratch_elems(true))}, stat_dt, be);
}

void Activations::relayout(const ActivationPlanner& plan) {
  MESHLM_CHECK(size_t(slots_) * plan.saved_elems(false) + plan.scratch_elems(false) <= size_t(acts_.numel()) &&
                   size_t(slots_) * plan.saved_elems(true) + plan.scratch_elems(true) <= size_t(stats_.numel()),
               "activations: the new layout does not fit the memory");
  saved_ = plan.saved_elems(false);
  saved_stats_ = plan.saved_elems(true);
}

void* Activations::at(Act a) {
  const size_t saved = a.stat ? saved_stats_ : saved_;
  const size_t index = a.scratch ? size_t(slots_) * saved + a.offset : size_t(slot_) * saved + a.offset;
  return static_cast<char*>(a.stat ? stats_.data() : acts_.data()) + index * (a.stat ? stat_esz_ : esz_);
}

const void* Activations::at_slot(Act a, int slot) const {
  MESHLM_CHECK(!a.scratch && slot >= 0 && slot < slots_, "activations: no such saved buffer");
  const size_t saved = a.stat ? saved_stats_ : saved_;
  return static_cast<const char*>(a.stat ? stats_.data() : acts_.data()) +
         (size_t(slot) * saved + a.offset) * (a.stat ? stat_esz_ : esz_);
}

namespace {
DType master_of(DType compute) { return compute == DType::fp64 ? DType::fp64 : DType::fp32; }
}  // namespace

Weights::Weights(ParamTable table, Backend& be, DType compute, const WeightResidency& r)
    : table_(std::move(table)),
      be_(be),
      dt_(compute),
      esz_(dtype_size(compute)),
      master_esz_(dtype_size(master_of(compute))),
      res_(r) {
  if (res_.end < 0) res_ = WeightResidency{0, table_.total(), r.shard_masters, r.window_weights, r.window_grads};
  allocate();
}

void Weights::allocate() {
  const int64_t P = table_.total();
  const DType master = master_of(dt_);
  MESHLM_CHECK(0 <= res_.begin && res_.begin <= res_.end && res_.end <= P, "weights: bad shard range");
  MESHLM_CHECK(!res_.window_weights || res_.shard_masters, "weights: gathered windows need sharded masters");
  MESHLM_CHECK(!res_.shard_masters || dt_ != master || res_.window_weights,
               "weights: sharded masters in the compute dtype leave the layers nothing whole to read");
  const int64_t shard = res_.end - res_.begin;
  params_ = Tensor({res_.shard_masters ? shard : P}, master, be_);
  grads_ = Tensor({res_.window_grads ? shard : P}, master, be_);
  if (dt_ != master) compute_ = Tensor({res_.window_weights ? shard : P}, dt_, be_);
}

void* Weights::at(Tensor& t, int64_t base, int64_t off, size_t esz, const char* what) {
  MESHLM_CHECK(off >= base && off <= base + t.numel(),
               std::string("weights: element ") + std::to_string(off) + " of the " + what + " is not stored on this rank");
  return static_cast<char*>(t.data()) + size_t(off - base) * esz;
}

void* Weights::master_at(int64_t off) { return at(params_, master_begin(), off, master_esz_, "masters"); }
void* Weights::grad_at(int64_t off) { return at(grads_, grad_begin(), off, master_esz_, "gradients"); }
void* Weights::compute_at(int64_t off) {
  if (dt_ == params_.dtype()) return master_at(off);
  return at(compute_, res_.window_weights ? res_.begin : 0, off, esz_, "compute weights");
}

void Weights::map(View v, int64_t lo, int64_t hi, void* data) {
  auto& ws = windows_[int(v)];
  auto it = std::lower_bound(ws.begin(), ws.end(), lo, [](const Window& w, int64_t x) { return w.lo < x; });
  MESHLM_CHECK((it == ws.end() || it->lo >= hi) && (it == ws.begin() || std::prev(it)->hi <= lo),
               "weights: overlapping windows");
  ws.insert(it, Window{lo, hi, data});
}

void Weights::unmap(View v, int64_t lo) {
  auto& ws = windows_[int(v)];
  auto it = std::find_if(ws.begin(), ws.end(), [&](const Window& w) { return w.lo == lo; });
  MESHLM_CHECK(it != ws.end(), "weights: no window at " + std::to_string(lo));
  ws.erase(it);
}

void* Weights::windowed(View v, const ParamEntry& e) const {
  const auto& ws = windows_[int(v)];
  auto it = std::upper_bound(ws.begin(), ws.end(), e.offset, [](int64_t x, const Window& w) { return x < w.lo; });
  MESHLM_CHECK(it != ws.begin() && std::prev(it)->hi >= e.offset + e.numel(),
               e.name + (v == View::weights ? ": its weights are not gathered" : ": no gradient window is open") +
                   " (a unit ran outside the data-parallel strategy's hooks)");
  --it;
  const size_t esz = v == View::weights ? esz_ : master_esz_;
  return static_cast<char*>(it->data) + size_t(e.offset - it->lo) * esz;
}

const void* Weights::weight(const ParamEntry& e) const {
  if (res_.window_weights) return windowed(View::weights, e);
  if (dt_ == params_.dtype()) return static_cast<const char*>(params_.data()) + size_t(e.offset) * master_esz_;
  return static_cast<const char*>(compute_.data()) + size_t(e.offset) * esz_;
}

void* Weights::grad(const ParamEntry& e) {
  if (res_.window_grads) return windowed(View::grads, e);
  return static_cast<char*>(grads_.data()) + size_t(e.offset) * master_esz_;
}
void* Weights::param(const ParamEntry& e) { return master_at(e.offset); }

}  // namespace meshlm
