// The parameter table: every parameter's Hugging Face name, shape and offset in ONE flat
// buffer. Gradients and optimizer moments are flat buffers with the same offsets, so a
// data-parallel bucket or a ZeRO-1 shard is just a slice [begin, end) of them.
//
// Layers declare their parameters (ParamDecl: name, unsharded shape, initialisation); the plan's
// sharding rules say how each is split across the tensor-parallel ranks; the table holds this
// rank's part of each, in declaration order except that tied parameters (the embedding the LM
// head shares) lead it: the pipeline's tied-gradient sum and the buckets rely on that.
// Shapes follow Hugging Face: Conv1D weights are (in, out), e.g. c_attn.weight is (C, 3C).
// The one exception: transformer.wte.weight is stored (Vp, C) with the padded vocabulary;
// its first V rows are the Hugging Face tensor (`hf_shape`).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "plan/plan.h"

namespace meshlm {

// A parameter as a layer declares it: unsharded, with its initialisation.
struct ParamDecl {
  std::string name;      // "transformer.h.0.attn.c_attn.weight"
  Shape shape;           // unsharded, as stored (wte: the padded vocabulary)
  double init_std = 0;   // normal(0, init_std); 0 means constant init_value
  double init_value = 0;
  bool weight_decay = false;  // 2-D weights decay; biases, layernorms do not
  Shape hf_shape;        // as Hugging Face stores it when whole (empty: shape)
  int64_t live = -1;     // elements of the unsharded tensor below this index are real (-1: all)
  std::string group;     // the unit it belongs to, for the numerics report ("embedding", "h.3", "final")
  bool tied = false;     // also declared by another unit (the LM head's wte): leads the table
};

struct ParamEntry {
  std::string name;    // "transformer.h.0.attn.c_attn.weight"
  Shape shape;         // as stored here (this tensor-parallel rank's part)
  Shape global_shape;  // unsharded
  Sharding shard = Sharding::replicated;
  int64_t groups = 1;  // column groups (Sharding::columns)
  int tp = 1, tp_rank = 0;
  int parts = 1;       // distinct parts over the tp ranks (tp when split; fewer: each part shared)
  int64_t live = 0;    // elements of the unsharded tensor below this index are real (wte: V rows)
  Shape hf_shape;      // as Hugging Face stores it (differs only for the padded wte)
  int64_t offset = 0;  // in elements, into the flat buffer
  double init_std = 0; // normal(0, init_std); 0 means constant init_value
  double init_value = 0;
  bool weight_decay = false;
  std::string group;   // the unit that declared it
  int64_t numel() const { return shape_numel(shape); }
  // Which part this rank holds, and whether it is the rank that counts it once (the first of
  // the ranks sharing it; rank 0 for a replicated parameter), e.g. in the gradient's norm.
  int part() const { return parts <= 1 ? 0 : tp_rank / (tp / parts); }
  bool counted_here() const { return parts <= 1 ? tp_rank == 0 : tp_rank % (tp / parts) == 0; }
  int64_t hf_numel() const { return shape_numel(hf_shape); }
  // The index, in the unsharded tensor (row-major), of local element i.
  int64_t global_index(int64_t i) const;
  // Calls f(local, global, count) for each run of elements contiguous in both the local and
  // the unsharded tensor: the slice this rank holds, as copies.
  template <class F>
  void for_each_run(F&& f) const {
    const int64_t n = numel();
    if (shard != Sharding::columns || tp == 1) return f(int64_t(0), global_index(0), n);
    const int64_t width = shape.back() / groups;  // this rank's part of one column group
    for (int64_t i = 0; i < n; i += width) f(i, global_index(i), width);
  }
};

class ParamTable {
 public:
  ParamTable() = default;
  // This tensor-parallel rank's parts of the declared parameters, split by the plan's rules.
  // A name declared twice (a tied parameter) is one entry. Throws naming a parameter whose
  // dimension does not split into tp parts.
  ParamTable(const std::vector<ParamDecl>& decls, const Plan& plan, int tp_rank);
  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry& at(const std::string& name) const;  // throws on an unknown name
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  int64_t total() const { return total_; }

 private:
  void add(const ParamDecl& d, const ShardRule& rule, int tp, int tp_rank);
  std::vector<ParamEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
  int64_t total_ = 0;
};

// Fills `flat` (dtype fp32 or fp64, total() elements, host memory) with the initial weights:
// each element a pure function of (seed, parameter name, its index in the unsharded tensor),
// so a sharded parameter is exactly the slice of the unsharded one.
// `flat` may hold only the elements [begin, begin + flat.numel()) of the table (a ZeRO shard).
void init_params(const ParamTable& table, uint64_t seed, TensorView flat, int64_t begin = 0);

}  // namespace meshlm
