// `meshlm export`: a checkpoint as a Hugging Face model directory (train/hf_export.h).
#include <iostream>

#include "cli/commands.h"
#include "train/hf_export.h"

namespace meshlm::cli {

void add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a checkpoint as a Hugging Face model directory (from_pretrained)");
  struct Opts {
    std::string checkpoint, out;
    bool overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory (any layout: its tensors are whole)")->required();
  cmd->add_option("--out", o->out, "directory to write config.json, generation_config.json, model.safetensors")->required();
  cmd->add_flag("--overwrite", o->overwrite, "replace an earlier export in --out");
  cmd->footer(
      "gpt2 checkpoints become GPT2LMHeadModel directories, llama ones LlamaForCausalLM (config.json with\n"
      "GPT2Config's or LlamaConfig's fields; fp32 weights with Hugging Face's names). The tokenizer is not\n"
      "exported yet (meshlm's tokenizer file is not HF's tokenizer.json format).");
  cmd->callback([o]() {
    export_hugging_face(o->checkpoint, o->out, o->overwrite);
    std::cout << "exported " << o->checkpoint << " to " << o->out << " (config.json, generation_config.json, model.safetensors)\n";
  });
}

}  // namespace meshlm::cli
