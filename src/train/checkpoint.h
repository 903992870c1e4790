// Checkpoints: one directory per save, written atomically. Contents:
//   model.safetensors      the weights, Hugging Face GPT-2 names and shapes (GPT2LMHeadModel
//                          loads it; the tied lm_head is implied), fp32
//   optimizer.safetensors  AdamW moments "exp_avg/<name>", "exp_avg_sq/<name>" (stored shapes)
//   trainer.json           step, data-loader position, the full config
//   tokenizer.json         the tokenizer file, when the run used one from `meshlm tokenizer train`
//   COMPLETE               written last: byte count and checksum of every file above
// The directory is built under a temporary name and renamed into place after COMPLETE exists,
// so a crash never leaves a directory that looks complete. Loading verifies every checksum.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "data/bpe.h"
#include "data/loader.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "optim/adamw.h"

namespace meshlm {

struct TrainerState {
  int64_t step = 0;  // optimizer steps completed
  LoaderState loader;
  int64_t epoch = 0;  // informational: loader.sequences / windows per epoch
  // The trainer's random stream. Training draws nothing from it yet (no dropout, sequential
  // data); it is checkpointed so that features which do resume exactly.
  Rng rng;
  // The precision mode's own state (loss scaler, fp8 scales), as saved in trainer.json.
  nlohmann::json precision;
};

// Writes checkpoint `dir` (must not be inside a partially written directory).
// Writes a checkpoint directory atomically (under <dir>.tmp, COMPLETE last, then renamed).
// With an optimizer that owns a slice of the state (ZeRO-1), every rank of `group` calls this:
// each writes optimizer.rank<r>-of-<n>.safetensors (its moments with their global range), and
// rank 0 writes the rest. Otherwise one caller writes everything.
void save_checkpoint(const std::string& dir, const Model& model, AdamW* opt, const TrainerState& st,
                     const nlohmann::json& config, const std::string& tokenizer_file = "",
                     Communicator* group = nullptr);
// The tokenizer a checkpoint's model reads: its tokenizer.json if present, else the config's.
BpeTokenizer checkpoint_tokenizer(const std::string& dir, const std::string& config_tokenizer);
// Verifies the directory (marker, sizes, checksums) and returns trainer.json.
nlohmann::json verify_checkpoint(const std::string& dir);
// Loads weights (and optimizer moments, if opt is given: the part in opt's range, from a
// whole-state file or from any layout's slices) into a model built from the checkpoint's
// config; shape mismatches throw naming the tensor. Returns trainer.json.
nlohmann::json load_checkpoint(const std::string& dir, Model& model, AdamW* opt);

std::string checkpoint_dir_name(int64_t step);  // "step_000020"

}  // namespace meshlm
