// Llama as Hugging Face's LlamaForCausalLM computes it, as a composition of layers: the token
// embedding (no positions), L pre-RMSNorm blocks (input_layernorm -> grouped-query attention
// with rotary positions -> residual, post_attention_layernorm -> SwiGLU MLP -> residual), the
// final norm and an LM head of its own (or tied to the embedding); no biases, no dropout.
// Parameters carry Hugging Face's names and layouts (model.layers.N.self_attn.q_proj.weight as
// (out, in), q and k in HF's rotary layout), so checkpoints load in transformers unchanged.
#pragma once
#include <vector>

#include "model/config.h"
#include "model/unit.h"
#include "plan/plan.h"

namespace meshlm {

// The Megatron layout: q/k/v, gate and up column-parallel (rows of their (out, in) weights),
// o and down row-parallel (columns), the embedding and the untied LM head vocabulary-parallel;
// the norms replicated. k and v split by kv heads when tp divides n_kv_head; when tp is a
// multiple of it, in n_kv_head parts each shared by tp / n_kv_head ranks. Anything else
// throws naming both numbers.
std::vector<ShardRule> llama_sharding(const ModelConfig& cfg, int tp);

// The units of one pipeline stage (as gpt2_units).
DecoderUnits llama_units(const ModelConfig& cfg, const StageLayers& stage, int tp);

}  // namespace meshlm
