// A Hugging Face model directory from a checkpoint: what `transformers` reads with
// from_pretrained. config.json (GPT2Config for gpt2, LlamaConfig for llama, every field the
// model's computation depends on), generation_config.json and model.safetensors (the
// checkpoint's, whose tensors already carry Hugging Face's names, layouts and unpadded
// vocabulary; fp32). meshlm's own tokenizer file is not copied: its format is not HF's
// tokenizer.json (writing that one is the next step).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace meshlm {

// The config.json of a model (fp32 weights).
nlohmann::ordered_json hf_config(const ModelConfig& m);
// Verifies the checkpoint (checksums, fields, tensor shapes), then writes out_dir's files; an
// out_dir holding a config.json is refused unless `overwrite`.
void export_hugging_face(const std::string& checkpoint, const std::string& out_dir, bool overwrite);

}  // namespace meshlm
