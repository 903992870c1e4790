// `meshlm export` (a checkpoint as a Hugging Face model directory, train/hf_export.h) and
// `meshlm import` (a Hugging Face model directory or model.safetensors as a checkpoint).
#include <filesystem>
#include <iostream>
#include <set>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "data/bpe.h"
#include "train/checkpoint.h"
#include "train/hf_export.h"
#include "train/hf_import.h"

namespace meshlm::cli {

void add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a checkpoint as a Hugging Face model directory (from_pretrained)");
  struct Opts {
    std::string checkpoint, out, dtype = "fp32";
    bool overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory (any layout: its tensors are whole)")->required();
  cmd->add_option("--out", o->out, "directory to write config.json, generation_config.json, model.safetensors, tokenizer.json")->required();
  cmd->add_option("--dtype", o->dtype, "weights in fp32 or bf16 (torch_dtype is set to match) [default: fp32]");
  cmd->add_flag("--overwrite", o->overwrite, "replace an earlier export in --out");
  cmd->footer(
      "gpt2 checkpoints become GPT2LMHeadModel directories, llama ones LlamaForCausalLM (config.json with\n"
      "GPT2Config's or LlamaConfig's fields; weights with Hugging Face's names and unpadded vocabulary).\n"
      "The tokenizer (bytes, gpt2 or a `meshlm tokenizer train` file) is written as HF's tokenizer.json\n"
      "with a tokenizer_config.json, so AutoTokenizer.from_pretrained(DIR) loads it too.");
  cmd->callback([o]() {
    const ExportReport r = export_hugging_face(o->checkpoint, o->out, o->overwrite, o->dtype);
    std::string files;
    for (const auto& f : r.files) files += (files.empty() ? "" : ", ") + f;
    std::cout << "exported " << o->checkpoint << " to " << o->out << " (" << files << "; " << o->dtype << ")\n";
    if (!r.note.empty()) std::cout << "note     " << r.note << "\n";
  });

  auto* imp = app.add_subcommand("import", "Turn a Hugging Face model directory or model.safetensors into a meshlm checkpoint");
  struct ImportOpts {
    std::string from, out;
    bool overwrite = false;
  };
  auto io = std::make_shared<ImportOpts>();
  ConfigFlags flags;
  imp->add_option("--from", io->from, "a Hugging Face model directory (config.json + model.safetensors) or a model.safetensors")
      ->required();
  imp->add_option("--out", io->out, "checkpoint directory to write (weights only, step 0)")->required();
  imp->add_flag("--overwrite", io->overwrite, "replace an existing --out");
  std::set<std::string> not_model;  // import takes the model keys (and its seed, vocab_resize, tokenizer) only
  for (const auto& k : config_keys())
    if (!is_model_key(k.key) && k.key != "seed" && k.key != "vocab_resize" && k.key != "tokenizer") not_model.insert(k.key);
  flags.add_to(imp, not_model);
  imp->footer(
      "The checkpoint holds the weights (fp32), the model keys and, from the directory, its tokenizer.json:\n"
      "`meshlm sample`, `eval` and `export` take it. To fine-tune, `meshlm train --init-from DIR` reads the\n"
      "directory itself (fresh optimizer, step 0). A bare model.safetensors needs the model keys as flags\n"
      "(--arch, --n-layer, ...); names with or without transformer./model., F16/BF16 up-cast, buffers skipped.");
  imp->callback([io, flags]() {
    TrainConfig cfg;
    flags.apply(cfg);
    cfg.init_from = io->from;
    const std::string line = adopt_hf_model(cfg, [&](const std::string& k) { return flags.given(k); });
    if (!line.empty()) std::cout << line << "\n";
    cfg.model().validate();
    MESHLM_CHECK(io->overwrite || !std::filesystem::exists(io->out), io->out + " exists (--overwrite replaces it)");
    if (io->overwrite) std::filesystem::remove_all(io->out);
    auto be = make_backend("cpu");
    Model model(cfg.model(), *be);
    model.init(uint64_t(cfg.seed));
    const HfSource src = locate_hf_source(io->from);
    const ImportReport r = import_hf_weights(src.weights, model, cfg.vocab_resize == 1);
    cfg.tokenizer = src.tokenizer.empty() ? cfg.tokenizer : "tokenizer.json";
    cfg.seq_len = std::min(cfg.seq_len, cfg.model().max_seq_len);
    cfg.max_seq_len = cfg.model().max_seq_len;
    save_checkpoint(io->out, model, nullptr, TrainerState{}, cfg.to_json(), src.tokenizer);
    std::cout << "imported " << r.tensors << " tensors (" << r.dtype << ") from " << src.weights << " into " << io->out
              << (r.note.empty() ? std::string() : "; " + r.note) << "\n";
  });
}

}  // namespace meshlm::cli
