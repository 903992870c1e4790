// The shape of a decoder model of one of the families (model/family.h): GPT-2 or Llama.
// Parameter counts and the padded vocabulary are derived here.
#pragma once
#include <cstdint>
#include <string>

namespace meshlm {

struct ModelConfig {
  std::string arch = "gpt2";  // gpt2 | llama
  int64_t n_layer = 4;        // L
  int64_t n_head = 4;         // NH
  int64_t n_embd = 128;       // C
  int64_t max_seq_len = 256;  // maximum T (GPT-2: rows of the position embedding)
  int64_t vocab_size = 256;   // V

  // Llama (ignored by gpt2, which refuses values other than these defaults).
  int64_t n_kv_head = 0;          // key/value heads (grouped-query attention); 0: n_head
  double rope_theta = 500000.0;   // base of the rotary frequencies (Llama 3)
  int64_t ffn_hidden = 0;         // SwiGLU hidden width; 0: 8/3 C rounded up to ffn_multiple_of
  int64_t ffn_multiple_of = 256;
  double norm_eps = 1e-5;         // RMSNorm epsilon
  int64_t tie_embeddings = -1;    // 1: the LM head is the token embedding; -1: the family's default
  // Rotary frequency scaling: "none", or "llama3" (Llama 3.1's: frequencies below
  // original / low_freq_factor wavelengths divided by factor, a smooth blend up to high_freq_factor).
  std::string rope_scaling = "none";
  double rope_factor = 8.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;

  bool llama() const { return arch == "llama"; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  bool tied() const { return tie_embeddings < 0 ? !llama() : tie_embeddings == 1; }
  int64_t ffn_width() const;  // Llama's SwiGLU hidden units (GPT-2's MLP is 4C)

  // Vp: V rounded up to a multiple of 128 (aligned GEMM rows); the extra rows of the
  // vocabulary matrices are zero, their logits are excluded from the softmax, so the loss is
  // unchanged.
  int64_t padded_vocab_size() const { return (vocab_size + 127) / 128 * 128; }
  int64_t head_size() const { return n_embd / n_head; }
  // Throws meshlm::Error naming the bad key when a size is non-positive, heads don't divide C,
  // or a key does not belong to the family.
  void validate() const;
  // Trainable parameters as Hugging Face counts them (unpadded vocabulary, a tied head once),
  // summed over the layers' declarations.
  int64_t num_parameters() const;
  // Model FLOPs per token of one training step (forward + backward), summed over the GEMMs of
  // the layers' cost records (model/model.h unit_costs): 6 x the matrices' parameters (the
  // padded LM head) + 12 L C T for attention's products (GPT-2 and multi-head Llama).
  double flops_per_token(int64_t T) const;
  std::string describe() const;  // "gpt2 L4 H4 C128 T256 V256 (0.8M parameters)"
  // The same model shape (every key above).
  bool operator==(const ModelConfig&) const = default;
};

}  // namespace meshlm
