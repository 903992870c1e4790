#include "model/layer.h"

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

Weights::Weights(ParamTable table, Backend& be, DType compute)
    : table_(std::move(table)),
      dt_(compute),
      esz_(dtype_size(compute)),
      master_esz_(dtype_size(master_of(compute))),
      params_({table_.total()}, master_of(compute), be),
      grads_({table_.total()}, master_of(compute), be) {
  if (compute != master_of(compute)) compute_ = Tensor({table_.total()}, compute, be);
}

const void* Weights::weight(const ParamEntry& e) const {
  if (dt_ == params_.dtype()) return static_cast<const char*>(params_.data()) + size_t(e.offset) * master_esz_;
  return static_cast<const char*>(compute_.data()) + size_t(e.offset) * esz_;
}

void* Weights::grad(const ParamEntry& e) { return static_cast<char*>(grads_.data()) + size_t(e.offset) * master_esz_; }
void* Weights::param(const ParamEntry& e) { return static_cast<char*>(params_.data()) + size_t(e.offset) * master_esz_; }

}  // namespace meshlm
