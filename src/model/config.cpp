#include "model/config.h"

#include <cstdio>

#include "core/error.h"

namespace meshlm {

void ModelConfig::validate() const {
  MESHLM_CHECK(n_layer > 0, "n_layer must be positive (got " + std::to_string(n_layer) + ")");
  MESHLM_CHECK(n_head > 0, "n_head must be positive (got " + std::to_string(n_head) + ")");
  MESHLM_CHECK(n_embd > 0, "n_embd must be positive (got " + std::to_string(n_embd) + ")");
  MESHLM_CHECK(max_seq_len > 0, "max_seq_len must be positive (got " + std::to_string(max_seq_len) + ")");
  MESHLM_CHECK(vocab_size > 0, "vocab_size must be positive (got " + std::to_string(vocab_size) + ")");
  MESHLM_CHECK(n_embd % n_head == 0, "n_embd (" + std::to_string(n_embd) +
                                         ") must be divisible by n_head (" + std::to_string(n_head) + ")");
}

int64_t ModelConfig::num_parameters() const {
  const int64_t C = n_embd, L = n_layer;
  const int64_t per_layer = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) +
                            (4 * C * C + C);
  return vocab_size * C + max_seq_len * C + L * per_layer + 2 * C;
}

double ModelConfig::flops_per_token(int64_t T) const {
  return 6.0 * double(num_parameters()) + 12.0 * double(n_layer) * double(n_embd) * double(T);
}

std::string ModelConfig::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "L%lld H%lld C%lld T%lld V%lld (%.2fM parameters)",
                (long long)n_layer, (long long)n_head, (long long)n_embd, (long long)max_seq_len,
                (long long)vocab_size, num_parameters() / 1e6);
  return buf;
}

}  // namespace meshlm
