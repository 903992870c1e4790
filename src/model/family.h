// The model families and what the rest of meshlm asks of one, by the config's `arch`:
// the units of a pipeline stage (gpt2.h, llama.h), the sharding rules of its parameters for the
// plan, and which parameter, if any, the first and last pipeline stages share (the tied
// embedding / LM head). A new family is a file beside gpt2.cpp and llama.cpp and a line in each
// function here.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/unit.h"
#include "plan/plan.h"

namespace meshlm {

DecoderUnits decoder_units(const ModelConfig& cfg, const StageLayers& stage, int tp);
// Throws naming the problem when the model does not split over tp ranks.
std::vector<ShardRule> sharding_rules(const ModelConfig& cfg, int tp);
// "transformer.wte.weight" (GPT-2), "model.embed_tokens.weight" (a tied Llama), "" (untied).
std::string tied_parameter(const ModelConfig& cfg);
// The architectures, for --help and errors.
const char* arch_names();

}  // namespace meshlm
