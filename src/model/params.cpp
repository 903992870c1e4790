#include "model/params.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

std::vector<int64_t> pipeline_split(int64_t n_layer, int pp, const std::string& spec) {
  MESHLM_CHECK(pp >= 1, "pp must be >= 1");
  std::vector<int64_t> split;
  if (spec.empty()) {
    MESHLM_CHECK(n_layer % pp == 0, "pipeline: " + std::to_string(n_layer) + " layers do not split evenly into " +
                                        std::to_string(pp) + " stages; give the split with --pp-layers (e.g. " +
                                        std::to_string(n_layer / pp + 1) + ",...)");
    return std::vector<int64_t>(size_t(pp), n_layer / pp);
  }
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, comma - pos);
    int64_t n = 0;
    size_t used = 0;
    try {
      n = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MESHLM_CHECK(used == item.size() && used > 0 && n >= 1,
                 "--pp-layers '" + spec + "': '" + item + "' is not a positive layer count");
    split.push_back(n);
    pos = comma + 1;
  }
  int64_t sum = 0;
  for (int64_t n : split) sum += n;
  MESHLM_CHECK(int(split.size()) == pp, "--pp-layers '" + spec + "' names " + std::to_string(split.size()) +
                                            " stages but pp is " + std::to_string(pp));
  MESHLM_CHECK(sum == n_layer, "--pp-layers '" + spec + "' holds " + std::to_string(sum) +
                                   " layers but the model has " + std::to_string(n_layer));
  return split;
}

std::vector<int64_t> pipeline_split(const ModelConfig& cfg, int64_t T, int pp, const std::string& spec) {
  if (spec != "balanced") return pipeline_split(cfg.n_layer, pp, spec);
  const int64_t L = cfg.n_layer;
  MESHLM_CHECK(pp >= 1 && pp <= L, "--pp-layers balanced: " + std::to_string(pp) + " stages need at least as many layers (the model has " +
                                       std::to_string(L) + ")");
  const double C = double(cfg.n_embd), block = 24 * C * C + 4 * double(T) * C,
               head = 2 * C * double(cfg.padded_vocab_size());
  // best[s][i]: the smallest possible cost of the most expensive of stages 0..s holding
  // layers [0, i); from[s][i]: where stage s starts in that split.
  const double inf = 1e300;
  std::vector<std::vector<double>> best(size_t(pp), std::vector<double>(size_t(L + 1), inf));
  std::vector<std::vector<int64_t>> from(size_t(pp), std::vector<int64_t>(size_t(L + 1), 0));
  for (int64_t i = 1; i <= L; i++) best[0][size_t(i)] = double(i) * block + (pp == 1 ? head : 0);
  for (int s = 1; s < pp; s++)
    for (int64_t i = s + 1; i <= L; i++)
      for (int64_t j = s; j < i; j++) {  // stage s holds [j, i)
        const double c = std::max(best[size_t(s - 1)][size_t(j)], double(i - j) * block + (s == pp - 1 ? head : 0));
        if (c < best[size_t(s)][size_t(i)]) {
          best[size_t(s)][size_t(i)] = c;
          from[size_t(s)][size_t(i)] = j;
        }
      }
  std::vector<int64_t> split(static_cast<size_t>(pp));
  int64_t end = L;
  for (int s = pp - 1; s > 0; s--) {
    split[size_t(s)] = end - from[size_t(s)][size_t(end)];
    end = from[size_t(s)][size_t(end)];
  }
  split[0] = end;
  return split;
}

StageLayers stage_layers(const std::vector<int64_t>& split, int stage) {
  MESHLM_CHECK(stage >= 0 && stage < int(split.size()), "stage_layers: no such stage");
  StageLayers s;
  for (int i = 0; i < stage; i++) s.first_layer += split[size_t(i)];
  s.n_layers = split[size_t(stage)];
  s.first = stage == 0;
  s.last = stage == int(split.size()) - 1;
  return s;
}

ParamTable::ParamTable(const ModelConfig& cfg, int tp, int tp_rank, const StageLayers& stage)
    : tp_(tp), tp_rank_(tp_rank) {
  cfg.validate();
  MESHLM_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp, "ParamTable: bad tensor-parallel rank");
  MESHLM_CHECK(cfg.n_head % tp == 0, "tensor parallelism: n_head (" + std::to_string(cfg.n_head) +
                                         ") must be a multiple of tp (" + std::to_string(tp) + ")");
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, Vp = cfg.padded_vocab_size();
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * double(cfg.n_layer));
  // The tied embedding / LM head is vocabulary-parallel: rank r holds rows [r Vp/tp, (r+1) Vp/tp).
  MESHLM_CHECK(Vp % tp == 0, "tensor parallelism: the padded vocabulary (" + std::to_string(Vp) +
                                 ") must split into tp (" + std::to_string(tp) + ") equal parts");
  const int64_t l0 = stage.first_layer, l1 = stage.n_layers < 0 ? cfg.n_layer : l0 + stage.n_layers;
  MESHLM_CHECK(l0 >= 0 && l0 <= l1 && l1 <= cfg.n_layer, "ParamTable: the stage's layers are outside the model");
  if (stage.first || stage.last) {
    add("transformer.wte.weight", {Vp, C}, std, 0, true, Sharding::rows);
    entries_.back().live = V * C;
    if (entries_.back().shard == Sharding::replicated) entries_.back().hf_shape = {V, C};
  }
  if (stage.first) add("transformer.wpe.weight", {cfg.max_seq_len, C}, std, 0, true);
  for (int64_t l = l0; l < l1; l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    add(p + "ln_1.weight", {C}, 0, 1, false);
    add(p + "ln_1.bias", {C}, 0, 0, false);
    add(p + "attn.c_attn.weight", {C, 3 * C}, std, 0, true, Sharding::columns, 3);
    add(p + "attn.c_attn.bias", {3 * C}, 0, 0, false, Sharding::columns, 3);
    add(p + "attn.c_proj.weight", {C, C}, proj_std, 0, true, Sharding::rows);
    add(p + "attn.c_proj.bias", {C}, 0, 0, false);
    add(p + "ln_2.weight", {C}, 0, 1, false);
    add(p + "ln_2.bias", {C}, 0, 0, false);
    add(p + "mlp.c_fc.weight", {C, 4 * C}, std, 0, true, Sharding::columns);
    add(p + "mlp.c_fc.bias", {4 * C}, 0, 0, false, Sharding::columns);
    add(p + "mlp.c_proj.weight", {4 * C, C}, proj_std, 0, true, Sharding::rows);
    add(p + "mlp.c_proj.bias", {C}, 0, 0, false);
  }
  if (stage.last) {
    add("transformer.ln_f.weight", {C}, 0, 1, false);
    add("transformer.ln_f.bias", {C}, 0, 0, false);
  }
}

int64_t ParamEntry::global_index(int64_t i) const {
  if (shard == Sharding::replicated || tp == 1) return i;
  const int64_t cols_local = shape.back(), cols = global_shape.back();
  if (shard == Sharding::rows) return i + int64_t(tp_rank) * numel();  // whole rows, in order
  const int64_t row = i / cols_local, j = i % cols_local;
  const int64_t width = cols_local / groups;  // this rank's part of one group
  const int64_t g = j / width, w = j % width;
  return row * cols + g * (cols / groups) + int64_t(tp_rank) * width + w;
}

void ParamTable::add(std::string name, Shape shape, double std, double value, bool decay,
                     Sharding shard, int64_t groups) {
  ParamEntry e;
  e.name = std::move(name);
  e.hf_shape = shape;
  e.global_shape = shape;
  e.shard = tp_ > 1 ? shard : Sharding::replicated;
  e.groups = groups;
  e.tp = tp_;
  e.tp_rank = tp_rank_;
  if (e.shard == Sharding::columns) {
    MESHLM_CHECK(shape.back() % (groups * tp_) == 0,
                 "tensor parallelism: " + e.name + "'s " + std::to_string(shape.back()) +
                     " columns do not split into " + std::to_string(tp_) + " parts");
    shape.back() /= tp_;
  } else if (e.shard == Sharding::rows) {
    MESHLM_CHECK(shape.front() % tp_ == 0, "tensor parallelism: " + e.name + "'s " +
                                               std::to_string(shape.front()) + " rows do not split into " +
                                               std::to_string(tp_) + " parts");
    shape.front() /= tp_;
  }
  e.hf_shape = e.shard == Sharding::replicated ? e.hf_shape : shape;
  e.live = shape_numel(e.global_shape);
  e.shape = std::move(shape);
  e.offset = total_;
  e.init_std = std;
  e.init_value = value;
  e.weight_decay = decay;
  total_ += e.numel();
  index_.emplace(e.name, entries_.size());
  entries_.push_back(std::move(e));
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  auto it = index_.find(name);
  MESHLM_CHECK(it != index_.end(), "unknown parameter '" + name + "'");
  return entries_[it->second];
}

void init_params(const ParamTable& table, uint64_t seed, TensorView flat) {
  MESHLM_CHECK(flat.numel() == table.total(), "init_params: buffer size mismatch");
  MESHLM_CHECK(flat.dtype == DType::fp32 || flat.dtype == DType::fp64,
               "init_params: fp32 or fp64 buffer expected");
  for (const auto& e : table.entries()) {
    const uint64_t stream = hash_name(e.name);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < e.numel(); i++) {
      const int64_t gi = e.global_index(i);  // drawn by unsharded index: a shard is a slice
      // padded vocabulary rows (global index past `live`) stay zero
      double v = gi >= e.live ? 0.0 : e.init_std > 0 ? e.init_std * normal01(seed, stream, uint64_t(gi))
                                                     : e.init_value;
      if (flat.dtype == DType::fp32)
        flat.as<float>()[e.offset + i] = float(v);
      else
        flat.as<double>()[e.offset + i] = v;
    }
  }
}

}  // namespace meshlm
