#include "model/family.h"

#include "core/error.h"
#include "model/gpt2.h"
#include "model/llama.h"

namespace meshlm {

DecoderUnits decoder_units(const ModelConfig& cfg, const StageLayers& stage, int tp) {
  cfg.validate();
  return cfg.llama() ? llama_units(cfg, stage, tp) : gpt2_units(cfg, stage, tp);
}

std::vector<ShardRule> sharding_rules(const ModelConfig& cfg, int tp) {
  cfg.validate();
  return cfg.llama() ? llama_sharding(cfg, tp) : gpt2_sharding();
}

std::string tied_parameter(const ModelConfig& cfg) {
  if (!cfg.tied()) return "";
  return cfg.llama() ? "model.embed_tokens.weight" : "transformer.wte.weight";
}

const char* arch_names() { return "gpt2, llama"; }

}  // namespace meshlm
