// Weights from Hugging Face: a model directory (config.json + model.safetensors, as
// from_pretrained reads and save_pretrained writes) or a bare model.safetensors, into a model of
// any layout (each rank takes its slices of the whole tensors). For fine-tuning: weights only,
// the optimizer, step counter and schedule start fresh.
//
//   names       with or without the "transformer." (GPT-2) or "model." (Llama) prefix; buffers
//               (attn.bias, attn.masked_bias, rotary_emb.inv_freq) and a tied model's
//               lm_head.weight are skipped; any other tensor the model has no place for is an error
//   dtypes      F32, F16 and BF16 (up-cast exactly)
//   shapes      checked against the model's, naming the tensor
//   vocabulary  a file's wte with more rows than vocab_size is accepted when the extra rows are
//               zero (padding, as nanoGPT's 50304); with `resize_vocab` the first min(V, rows)
//               rows are taken and any new rows keep the model's initialization
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/model.h"

namespace meshlm {

struct HfSource {
  std::string weights;    // the model.safetensors
  std::string config;     // its config.json ("" for a bare file)
  std::string tokenizer;  // the directory's tokenizer.json ("" if none)
};
// `path`: a directory holding model.safetensors (and usually config.json), or a .safetensors file.
HfSource locate_hf_source(const std::string& path);

// The model a config.json describes (GPT2Config or LlamaConfig), every field meshlm's
// computation depends on checked; `name` labels errors. max_seq_len is the config's positions.
ModelConfig model_config_from_hf(const nlohmann::json& config, const std::string& name);

struct ImportReport {
  int64_t tensors = 0, skipped = 0;  // loaded; buffers or duplicates left out
  std::string dtype;                 // the file's (F32, F16, BF16; "mixed")
  std::string note;                  // what was done about the vocabulary, if anything
};
// Loads this rank's slices of every parameter of `model` from the file; the rest of `model`
// (new vocabulary rows) keeps what it holds, so initialize it first.
ImportReport import_hf_weights(const std::string& safetensors, Model& model, bool resize_vocab);

}  // namespace meshlm
