#include "model/gpt2.h"

#include <cmath>

#include "core/error.h"
#include "model/attention.h"
#include "model/block.h"
#include "model/embedding.h"
#include "model/layernorm.h"
#include "model/lm_head.h"
#include "model/mlp.h"

namespace meshlm {

std::vector<ShardRule> gpt2_sharding() {
  return {{"transformer.h.*.attn.c_attn.*", Sharding::columns, 3},
          {"transformer.h.*.mlp.c_fc.*", Sharding::columns, 1},
          {"transformer.h.*.c_proj.weight", Sharding::rows, 1},
          {"transformer.wte.weight", Sharding::rows, 1}};
}

namespace {

using Gpt2Block = PreNormBlock<LayerNorm, Attention, Mlp>;

// x -> x + attn(ln_1(x)) -> (that) + mlp(ln_2(that)), with c_proj's std 0.02 / sqrt(2 L).
std::unique_ptr<BlockUnit> gpt2_block(const ModelConfig& cfg, int64_t l) {
  const std::string p = "transformer.h." + std::to_string(l) + ".";
  const int64_t C = cfg.n_embd;
  const double proj_std = 0.02 / std::sqrt(2.0 * double(cfg.n_layer));
  return std::make_unique<Gpt2Block>(
      l, C,
      Gpt2Block::Parts{LayerNorm(p + "ln_1", C, Keep::unless_full, "ln_1"), Attention(p + "attn", C, cfg.n_head, proj_std),
                       LayerNorm(p + "ln_2", C, Keep::unless_full, "ln_2"), Mlp(p + "mlp", C, proj_std), "ln_1",
                       "ln_2"});
}

}  // namespace

DecoderUnits gpt2_units(const ModelConfig& cfg, const StageLayers& stage, int tp) {
  cfg.validate();
  MESHLM_CHECK(cfg.n_head % tp == 0, "tensor parallelism: n_head (" + std::to_string(cfg.n_head) +
                                         ") must be a multiple of tp (" + std::to_string(tp) + ")");
  MESHLM_CHECK(cfg.padded_vocab_size() % tp == 0, "tensor parallelism: the padded vocabulary (" +
                                                      std::to_string(cfg.padded_vocab_size()) +
                                                      ") must split into tp (" + std::to_string(tp) + ") equal parts");
  const std::vector<int64_t> layers = stage.layers(cfg.n_layer);  // every chunk's, in forward order
  for (int64_t l : layers) MESHLM_CHECK(l >= 0 && l < cfg.n_layer, "the stage's layers are outside the model");
  DecoderUnits u;
  if (stage.first)
    u.embedding = std::make_unique<Embedding>("transformer.wte.weight", cfg.vocab_size, cfg.padded_vocab_size(),
                                              cfg.n_embd, cfg.max_seq_len);
  for (int64_t l : layers) u.blocks.push_back(gpt2_block(cfg, l));
  if (stage.last) {  // ln_f, then the LM head tied to wte
    const int64_t C = cfg.n_embd, V = cfg.vocab_size, Vp = cfg.padded_vocab_size();
    u.head = std::make_unique<NormHead<LayerNorm>>(
        C, LayerNorm("transformer.ln_f", C, Keep::always, "ln_f"),
        LmHead(C, V, Vp, Embedding::wte_decl("transformer.wte.weight", V, Vp, C, true, "embedding"), true), "ln_f");
  }
  return u;
}

}  // namespace meshlm
