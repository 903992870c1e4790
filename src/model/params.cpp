#include "model/params.h"

#include <algorithm>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

ParamTable::ParamTable(const std::vector<ParamDecl>& decls, const Plan& plan, int tp_rank) {
  const int tp = plan.mesh.tp;
  MESHLM_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp, "ParamTable: bad tensor-parallel rank");
  for (int pass = 0; pass < 2; pass++)  // tied parameters first, then the rest in order
    for (const ParamDecl& d : decls)
      if (d.tied == (pass == 0) && !contains(d.name)) add(d, plan.shard_of(d.name), tp, tp_rank);
}

int64_t ParamEntry::global_index(int64_t i) const {
  if (shard == Sharding::replicated || tp == 1) return i;
  const int64_t cols_local = shape.back(), cols = global_shape.back();
  if (shard == Sharding::rows) return i + int64_t(part()) * numel();  // whole rows, in order
  const int64_t row = i / cols_local, j = i % cols_local;
  const int64_t width = cols_local / groups;  // this rank's part of one group
  const int64_t g = j / width, w = j % width;
  return row * cols + g * (cols / groups) + int64_t(part()) * width + w;
}

void ParamTable::add(const ParamDecl& d, const ShardRule& rule, int tp, int tp_rank) {
  ParamEntry e;
  e.name = d.name;
  e.global_shape = d.shape;
  e.shard = tp > 1 ? rule.shard : Sharding::replicated;
  e.groups = rule.groups;
  e.tp = tp;
  e.tp_rank = tp_rank;
  const int parts = rule.parts > 0 ? rule.parts : tp;
  MESHLM_CHECK(e.shard == Sharding::replicated || (parts <= tp && tp % parts == 0),
               "tensor parallelism: " + e.name + " splits into " + std::to_string(parts) +
                   " parts, which tp (" + std::to_string(tp) + ") ranks cannot share evenly");
  e.parts = e.shard == Sharding::replicated ? 1 : parts;
  Shape shape = d.shape;
  if (e.shard == Sharding::columns) {
    MESHLM_CHECK(shape.back() % (e.groups * parts) == 0,
                 "tensor parallelism: " + e.name + "'s " + std::to_string(shape.back()) +
                     " columns do not split into " + std::to_string(parts) + " parts");
    shape.back() /= parts;
  } else if (e.shard == Sharding::rows) {
    MESHLM_CHECK(shape.front() % parts == 0, "tensor parallelism: " + e.name + "'s " +
                                                 std::to_string(shape.front()) + " rows do not split into " +
                                                 std::to_string(parts) + " parts");
    shape.front() /= parts;
  }
  // Hugging Face's shape when whole; a shard is stored as it is.
  e.hf_shape = e.shard != Sharding::replicated ? shape : d.hf_shape.empty() ? d.shape : d.hf_shape;
  e.live = d.live >= 0 ? d.live : shape_numel(e.global_shape);
  e.shape = std::move(shape);
  e.offset = total_;
  e.init_std = d.init_std;
  e.init_value = d.init_value;
  e.weight_decay = d.weight_decay;
  e.group = d.group;
  total_ += e.numel();
  index_.emplace(e.name, entries_.size());
  entries_.push_back(std::move(e));
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  auto it = index_.find(name);
  MESHLM_CHECK(it != index_.end(), "unknown parameter '" + name + "'");
  return entries_[it->second];
}

void init_params(const ParamTable& table, uint64_t seed, TensorView flat, int64_t begin) {
  const int64_t end = begin + flat.numel();
  MESHLM_CHECK(begin >= 0 && end <= table.total(), "init_params: buffer size mismatch");
  MESHLM_CHECK(flat.dtype == DType::fp32 || flat.dtype == DType::fp64,
               "init_params: fp32 or fp64 buffer expected");
  for (const auto& e : table.entries()) {
    const uint64_t stream = hash_name(e.name);
    const int64_t lo = std::max<int64_t>(0, begin - e.offset), hi = std::min(e.numel(), end - e.offset);
#pragma omp parallel for schedule(static)
    for (int64_t i = lo; i < hi; i++) {
      const int64_t gi = e.global_index(i);  // drawn by unsharded index: a shard is a slice
      // padded vocabulary rows (global index past `live`) stay zero
      double v = gi >= e.live ? 0.0 : e.init_std > 0 ? e.init_std * normal01(seed, stream, uint64_t(gi))
                                                     : e.init_value;
      if (flat.dtype == DType::fp32)
        flat.as<float>()[e.offset - begin + i] = float(v);
      else
        flat.as<double>()[e.offset - begin + i] = v;
    }
  }
}

}  // namespace meshlm
