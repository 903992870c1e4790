// A Hugging Face model directory from a checkpoint: what `transformers` reads with
// from_pretrained. config.json (GPT2Config for gpt2, LlamaConfig for llama, every field the
// model's computation depends on), generation_config.json and model.safetensors (the
// checkpoint's, whose tensors already carry Hugging Face's names, layouts and unpadded
// vocabulary), fp32 or bf16 (torch_dtype says which), and the tokenizer as HF's tokenizer.json
// with a tokenizer_config.json (PreTrainedTokenizerFast) when the checkpoint's is known.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace meshlm {

// The config.json of a model; dtype "float32" or "bfloat16" (its torch_dtype).
nlohmann::ordered_json hf_config(const ModelConfig& m, const std::string& dtype = "float32");

struct ExportReport {
  std::vector<std::string> files;  // written, in out_dir
  std::string note;                // why no tokenizer was written, if none was
};
// Verifies the checkpoint (checksums, fields, tensor shapes), then writes out_dir's files; an
// out_dir holding a config.json is refused unless `overwrite`. dtype: fp32 or bf16.
ExportReport export_hugging_face(const std::string& checkpoint, const std::string& out_dir, bool overwrite,
                                 const std::string& dtype = "fp32");

}  // namespace meshlm
