// The shape of a GPT-2 model. Parameter counts and the padded vocabulary are derived here.
#pragma once
#include <cstdint>
#include <string>

namespace meshlm {

struct ModelConfig {
  int64_t n_layer = 4;        // L
  int64_t n_head = 4;         // NH
  int64_t n_embd = 128;       // C
  int64_t max_seq_len = 256;  // maximum T (rows of the position embedding)
  int64_t vocab_size = 256;   // V

  // Vp: V rounded up to a multiple of 128 (aligned GEMM rows); the extra rows of the tied
  // embedding are zero, their logits are excluded from the softmax, so the loss is unchanged.
  int64_t padded_vocab_size() const { return (vocab_size + 127) / 128 * 128; }
  int64_t head_size() const { return n_embd / n_head; }
  // Throws meshlm::Error naming the bad key when a size is non-positive or heads don't divide C.
  void validate() const;
  // Trainable parameters as Hugging Face counts them (unpadded vocabulary, tied head).
  int64_t num_parameters() const;
  // Model FLOPs per token of one training step (forward + backward): 6 N + 12 L C T.
  double flops_per_token(int64_t T) const;
  std::string describe() const;  // "L4 H4 C128 T256 V256 (0.8M parameters)"
};

}  // namespace meshlm
