// The parameter table: every parameter's Hugging Face GPT-2 name, shape and offset in ONE flat
// buffer. Gradients and optimizer moments are flat buffers with the same offsets, so a later
// data-parallel bucket or ZeRO-1 shard is just a slice [begin, end) of them.
//
// Shapes follow Hugging Face: Conv1D weights are (in, out), e.g. c_attn.weight is (C, 3C).
// The one exception: transformer.wte.weight is stored (Vp, C) with the padded vocabulary;
// its first V rows are the Hugging Face tensor (`hf_shape`).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace meshlm {

// How a parameter is split across tensor-parallel ranks (the sharding plan, docs/parallel.md):
// replicated (every rank holds it all), columns (the last dimension split; `groups` > 1 splits
// each of that many equal column groups separately, as c_attn's q | k | v), or rows (the first
// dimension split).
enum class Sharding { replicated, columns, rows };

struct ParamEntry {
  std::string name;    // "transformer.h.0.attn.c_attn.weight"
  Shape shape;         // as stored here (this tensor-parallel rank's part)
  Shape global_shape;  // unsharded
  Sharding shard = Sharding::replicated;
  int64_t groups = 1;  // column groups (Sharding::columns)
  int tp = 1, tp_rank = 0;
  int64_t live = 0;    // elements of the unsharded tensor below this index are real (wte: V rows)
  Shape hf_shape;      // as Hugging Face stores it (differs only for the padded wte)
  int64_t offset = 0;  // in elements, into the flat buffer
  double init_std = 0; // normal(0, init_std); 0 means constant init_value
  double init_value = 0;
  bool weight_decay = false;  // 2-D weights decay; biases, layernorms do not
  int64_t numel() const { return shape_numel(shape); }
  int64_t hf_numel() const { return shape_numel(hf_shape); }
  // The index, in the unsharded tensor (row-major), of local element i.
  int64_t global_index(int64_t i) const;
};

// The part of the model one pipeline stage holds: blocks [first_layer, first_layer + n_layers),
// the embeddings when `first`, ln_f and the LM head when `last`. The head is tied to wte, so the
// first and the last stage each hold a copy of wte and sum its gradient (docs/parallel.md).
// The default is the whole model.
struct StageLayers {
  int64_t first_layer = 0, n_layers = -1;  // -1: every layer
  bool first = true, last = true;
};

// Layers per pipeline stage: the explicit split `spec` ("3,3,2": one positive count per stage,
// summing to n_layer) or, when empty, an even split (n_layer a multiple of pp). Anything else
// throws naming the problem: layers are never silently dropped.
std::vector<int64_t> pipeline_split(int64_t n_layer, int pp, const std::string& spec = "");
// The same for a model: spec may also be "balanced", the split that makes the most expensive
// stage as cheap as possible, counting forward FLOPs per token: 24 C^2 + 4 T C per block, and
// 2 C Vp for the LM head on the last stage (GPT-2 124M at T 256: the head costs 5.2 blocks, so
// two stages balance at 9 + 3 blocks, not 6 + 6).
std::vector<int64_t> pipeline_split(const ModelConfig& cfg, int64_t T, int pp, const std::string& spec);
// Stage `stage` of the split.
StageLayers stage_layers(const std::vector<int64_t>& split, int stage);

class ParamTable {
 public:
  // The parameters of tensor-parallel rank tp_rank of tp (tp = 1: the whole model). Column-
  // parallel: attn.c_attn (weight and bias, by heads within each of q, k, v) and mlp.c_fc;
  // row-parallel: attn.c_proj.weight and mlp.c_proj.weight; everything else replicated
  // (embeddings, layernorms, the row-parallel layers' biases).
  // stage: only that pipeline stage's parameters (names stay global: "transformer.h.5...").
  explicit ParamTable(const ModelConfig& cfg, int tp = 1, int tp_rank = 0, const StageLayers& stage = {});
  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry& at(const std::string& name) const;  // throws on an unknown name
  int64_t total() const { return total_; }

 private:
  void add(std::string name, Shape shape, double std, double value, bool decay,
           Sharding shard = Sharding::replicated, int64_t groups = 1);
  int tp_, tp_rank_;
  std::vector<ParamEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
  int64_t total_ = 0;
};

// Fills `flat` (dtype fp32 or fp64, total() elements) with the initial weights: each element a
// pure function of (seed, parameter name, its index in the unsharded tensor), so a sharded
// parameter is exactly the slice of the unsharded one.
void init_params(const ParamTable& table, uint64_t seed, TensorView flat);

}  // namespace meshlm
