// GPT-2 as Hugging Face's GPT2LMHeadModel computes it, as a composition of layers: token +
// position embedding, L pre-LayerNorm blocks (ln_1 -> causal self-attention -> residual, ln_2
// -> MLP (GELU tanh) -> residual), ln_f and an LM head tied to the token embedding; no dropout.
// Written once with unsharded shapes; the plan's sharding rules (gpt2_sharding) make it tensor
// parallel from outside, and a pipeline stage is a range of its blocks.
#pragma once
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/unit.h"
#include "plan/plan.h"

namespace meshlm {

// The Megatron layout of GPT-2's parameters by Hugging Face name: c_attn column-parallel by
// heads within each of q | k | v, c_fc column-parallel, both projections' weights row-parallel,
// the (tied) token embedding vocabulary-parallel by rows; everything else replicated.
std::vector<ShardRule> gpt2_sharding();

// The units of one pipeline stage of GPT-2: the embedding (first stage), the blocks of its
// chunks in forward order, ln_f with the LM head (last stage). Throws naming the
// problem when the model does not split over tp ranks (heads, the padded vocabulary).
DecoderUnits gpt2_units(const ModelConfig& cfg, const StageLayers& stage, int tp);

}  // namespace meshlm
