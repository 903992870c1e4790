#include "model/config.h"

#include <cstdio>

#include "core/error.h"
#include "model/model.h"

namespace meshlm {

int64_t ModelConfig::ffn_width() const {
  if (ffn_hidden > 0) return ffn_hidden;
  const int64_t h = 8 * n_embd / 3;  // Llama: int(2 * 4C / 3), then up to a multiple
  return (h + ffn_multiple_of - 1) / ffn_multiple_of * ffn_multiple_of;
}

void ModelConfig::validate() const {
  MESHLM_CHECK(arch == "gpt2" || arch == "llama", "arch must be gpt2 or llama (got '" + arch + "')");
  MESHLM_CHECK(n_layer > 0, "n_layer must be positive (got " + std::to_string(n_layer) + ")");
  MESHLM_CHECK(n_head > 0, "n_head must be positive (got " + std::to_string(n_head) + ")");
  MESHLM_CHECK(n_embd > 0, "n_embd must be positive (got " + std::to_string(n_embd) + ")");
  MESHLM_CHECK(max_seq_len > 0, "max_seq_len must be positive (got " + std::to_string(max_seq_len) + ")");
  MESHLM_CHECK(vocab_size > 0, "vocab_size must be positive (got " + std::to_string(vocab_size) + ")");
  MESHLM_CHECK(n_embd % n_head == 0, "n_embd (" + std::to_string(n_embd) +
                                         ") must be divisible by n_head (" + std::to_string(n_head) + ")");
  MESHLM_CHECK(n_kv_head >= 0 && tie_embeddings >= -1 && tie_embeddings <= 1,
               "n_kv_head must be >= 0 and tie_embeddings -1, 0 or 1");
  if (!llama()) {
    MESHLM_CHECK(kv_heads() == n_head, "n_kv_head is a llama key: GPT-2's attention has n_head key/value heads");
    MESHLM_CHECK(tied(), "tie_embeddings = 0 is a llama key: GPT-2's LM head is its token embedding");
    MESHLM_CHECK(rope_scaling == "none", "rope_scaling is a llama key: GPT-2 has learned positions");
    return;
  }
  MESHLM_CHECK(n_head % kv_heads() == 0, "n_head (" + std::to_string(n_head) + ") must be a multiple of n_kv_head (" +
                                             std::to_string(kv_heads()) + "): each kv head serves a group of query heads");
  MESHLM_CHECK(head_size() % 2 == 0, "llama: the head size n_embd / n_head (" + std::to_string(head_size()) +
                                         ") must be even (rotary pairs)");
  MESHLM_CHECK(head_size() <= 512, "llama: the head size n_embd / n_head must be at most 512");
  MESHLM_CHECK(ffn_hidden >= 0 && ffn_multiple_of > 0, "ffn_hidden must be >= 0 and ffn_multiple_of positive");
  MESHLM_CHECK(rope_theta > 1 && norm_eps > 0, "rope_theta must be > 1 and norm_eps positive");
  MESHLM_CHECK(rope_scaling == "none" || rope_scaling == "llama3",
               "rope_scaling must be none or llama3 (got '" + rope_scaling + "')");
  MESHLM_CHECK(rope_factor >= 1 && rope_low_freq_factor > 0 && rope_high_freq_factor > rope_low_freq_factor &&
                   rope_original_max_position > 0,
               "llama3 rope scaling: factor >= 1, 0 < low_freq_factor < high_freq_factor, original_max_position > 0");
}

int64_t ModelConfig::num_parameters() const {
  int64_t n = 0;
  const ParamTable table = param_table(*this, Plan{}, 0, 0);
  for (const ParamEntry& e : table.entries()) n += e.hf_numel();
  return n;
}

double ModelConfig::flops_per_token(int64_t T) const {
  double f = 0;
  for (const UnitCost& u : unit_costs(*this, Plan{}, 0, DType::fp32, 1, T))
    for (const Cost& c : u.ops) f += c.flops();
  return f / double(T);
}

std::string ModelConfig::describe() const {
  char buf[200];
  const std::string kv = llama() && kv_heads() != n_head ? " KV" + std::to_string(kv_heads()) : "";
  std::snprintf(buf, sizeof buf, "%s L%lld H%lld%s C%lld T%lld V%lld (%.2fM parameters)", arch.c_str(),
                (long long)n_layer, (long long)n_head, kv.c_str(), (long long)n_embd, (long long)max_seq_len,
                (long long)vocab_size, num_parameters() / 1e6);
  return buf;
}

}  // namespace meshlm
