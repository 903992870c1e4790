#include "model/params.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

ParamTable::ParamTable(const ModelConfig& cfg) {
  cfg.validate();
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, Vp = cfg.padded_vocab_size();
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * double(cfg.n_layer));
  add("transformer.wte.weight", {Vp, C}, std, 0, true);
  entries_.back().hf_shape = {V, C};
  add("transformer.wpe.weight", {cfg.max_seq_len, C}, std, 0, true);
  for (int64_t l = 0; l < cfg.n_layer; l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    add(p + "ln_1.weight", {C}, 0, 1, false);
    add(p + "ln_1.bias", {C}, 0, 0, false);
    add(p + "attn.c_attn.weight", {C, 3 * C}, std, 0, true);
    add(p + "attn.c_attn.bias", {3 * C}, 0, 0, false);
    add(p + "attn.c_proj.weight", {C, C}, proj_std, 0, true);
    add(p + "attn.c_proj.bias", {C}, 0, 0, false);
    add(p + "ln_2.weight", {C}, 0, 1, false);
    add(p + "ln_2.bias", {C}, 0, 0, false);
    add(p + "mlp.c_fc.weight", {C, 4 * C}, std, 0, true);
    add(p + "mlp.c_fc.bias", {4 * C}, 0, 0, false);
    add(p + "mlp.c_proj.weight", {4 * C, C}, proj_std, 0, true);
    add(p + "mlp.c_proj.bias", {C}, 0, 0, false);
  }
  add("transformer.ln_f.weight", {C}, 0, 1, false);
  add("transformer.ln_f.bias", {C}, 0, 0, false);
}

void ParamTable::add(std::string name, Shape shape, double std, double value, bool decay) {
  ParamEntry e;
  e.name = std::move(name);
  e.hf_shape = shape;
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
    const int64_t live = e.hf_numel();  // padded vocabulary rows stay zero
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < e.numel(); i++) {
      double v = i >= live ? 0.0 : e.init_std > 0 ? e.init_std * normal01(seed, stream, uint64_t(i))
                                                  : e.init_value;
      if (flat.dtype == DType::fp32)
        flat.as<float>()[e.offset + i] = float(v);
      else
        flat.as<double>()[e.offset + i] = v;
    }
  }
}

}  // namespace meshlm
