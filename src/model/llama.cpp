#include "model/llama.h"

#include "core/error.h"
#include "model/block.h"
#include "model/embedding.h"
#include "model/llama_attention.h"
#include "model/rmsnorm.h"
#include "model/swiglu_mlp.h"

namespace meshlm {

namespace {

void check_tp(const ModelConfig& cfg, int tp) {
  const int64_t kv = cfg.kv_heads();
  MESHLM_CHECK(cfg.n_head % tp == 0, "tensor parallelism: n_head (" + std::to_string(cfg.n_head) +
                                         ") must be a multiple of tp (" + std::to_string(tp) + ")");
  MESHLM_CHECK(kv % tp == 0 || tp % kv == 0,
               "tensor parallelism: n_kv_head (" + std::to_string(kv) + ") and tp (" + std::to_string(tp) +
                   ") do not fit: tp must divide n_kv_head (kv heads split) or be a multiple of it (each kv head "
                   "shared by tp / n_kv_head ranks)");
  MESHLM_CHECK(cfg.ffn_width() % tp == 0, "tensor parallelism: ffn_hidden (" + std::to_string(cfg.ffn_width()) +
                                              ") must be a multiple of tp (" + std::to_string(tp) + ")");
  MESHLM_CHECK(cfg.padded_vocab_size() % tp == 0, "tensor parallelism: the padded vocabulary (" +
                                                      std::to_string(cfg.padded_vocab_size()) +
                                                      ") must split into tp (" + std::to_string(tp) + ") equal parts");
}

using LlamaBlock = PreNormBlock<RmsNorm, LlamaAttention, SwiGluMlp>;

std::unique_ptr<BlockUnit> llama_block(const ModelConfig& cfg, int64_t l) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const int64_t C = cfg.n_embd;
  const float eps = float(cfg.norm_eps);
  return std::make_unique<LlamaBlock>(
      l, C,
      LlamaBlock::Parts{RmsNorm(p + "input_layernorm", C, eps, Keep::unless_full, "ln_1"),
                        LlamaAttention(p + "self_attn", cfg), RmsNorm(p + "post_attention_layernorm", C, eps,
                                                                      Keep::unless_full, "ln_2"),
                        SwiGluMlp(p + "mlp", C, cfg.ffn_width()), "input_layernorm", "post_attention_layernorm"});
}

}  // namespace

std::vector<ShardRule> llama_sharding(const ModelConfig& cfg, int tp) {
  check_tp(cfg, tp);
  const int kv_parts = cfg.kv_heads() % tp == 0 ? 0 : int(cfg.kv_heads());  // 0: tp parts
  return {{"model.layers.*.self_attn.q_proj.weight", Sharding::rows, 1},
          {"model.layers.*.self_attn.k_proj.weight", Sharding::rows, 1, kv_parts},
          {"model.layers.*.self_attn.v_proj.weight", Sharding::rows, 1, kv_parts},
          {"model.layers.*.self_attn.o_proj.weight", Sharding::columns, 1},
          {"model.layers.*.mlp.gate_proj.weight", Sharding::rows, 1},
          {"model.layers.*.mlp.up_proj.weight", Sharding::rows, 1},
          {"model.layers.*.mlp.down_proj.weight", Sharding::columns, 1},
          {"model.embed_tokens.weight", Sharding::rows, 1},
          {"lm_head.weight", Sharding::rows, 1}};
}

DecoderUnits llama_units(const ModelConfig& cfg, const StageLayers& stage, int tp) {
  cfg.validate();
  check_tp(cfg, tp);
  const std::vector<int64_t> layers = stage.layers(cfg.n_layer);  // every chunk's, in forward order
  for (int64_t l : layers) MESHLM_CHECK(l >= 0 && l < cfg.n_layer, "the stage's layers are outside the model");
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, Vp = cfg.padded_vocab_size();
  const std::string wte = "model.embed_tokens.weight";
  DecoderUnits u;
  if (stage.first) u.embedding = std::make_unique<Embedding>(wte, V, Vp, C, 0);
  for (int64_t l : layers) u.blocks.push_back(llama_block(cfg, l));
  if (stage.last) {
    const bool tied = cfg.tied();
    const ParamDecl w = tied ? Embedding::wte_decl(wte, V, Vp, C, true, "embedding")
                             : Embedding::wte_decl("lm_head.weight", V, Vp, C, false, "final");
    u.head = std::make_unique<NormHead<RmsNorm>>(
        C, RmsNorm("model.norm", C, float(cfg.norm_eps), Keep::always, "ln_f"), LmHead(C, V, Vp, w, tied), "norm");
  }
  return u;
}

}  // namespace meshlm
