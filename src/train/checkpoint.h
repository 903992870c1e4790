// Checkpoints: one directory per save, written atomically. Contents:
//   model.safetensors      the weights, Hugging Face GPT-2 names and shapes (GPT2LMHeadModel
//                          loads it; the tied lm_head is implied), fp32
//   optimizer.safetensors  AdamW moments "exp_avg/<name>", "exp_avg_sq/<name>" (stored shapes)
//   trainer.json           step, data-loader position, the full config
//   config.json            Hugging Face's config of the model (GPT2Config / LlamaConfig), so
//                          from_pretrained(dir) loads the checkpoint's weights as they are
//   meshlm_tokenizer.json  the tokenizer file, when the run used one from `meshlm tokenizer train`
//                          (tokenizer.json instead when it was a Hugging Face tokenizer.json)
//   COMPLETE               written last: format version, byte count and SHA-256 of every file
//                          of the directory (`sha256sum` checks them)
// The directory is built under a temporary name and renamed into place after COMPLETE exists,
// so a crash never leaves a directory that looks complete. Loading verifies every checksum.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "data/bpe.h"
#include "data/loader.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "optim/adamw.h"

namespace meshlm {

// 1: the first format (64-bit meshlm checksums, COMPLETE lists the files it wrote).
// 2: SHA-256 checksums (`sha256sum` checks them), COMPLETE covers every file of the
//    directory, trainer.json records the data it trained on ("data": path and fingerprint).
// Format 1 checkpoints are still read; a higher number is refused by name.
constexpr int kCheckpointFormat = 2;

struct TrainerState {
  int64_t step = 0;  // optimizer steps completed
  LoaderState loader;
  int64_t epoch = 0;  // informational: loader.sequences / windows per epoch
  // The trainer's random stream. Training draws nothing from it yet (no dropout, sequential
  // data); it is checkpointed so that features which do resume exactly.
  Rng rng;
  // The precision mode's own state (loss scaler, fp8 scales), as saved in trainer.json.
  nlohmann::json precision;
  // The data trained on: {"path": absolute path (a hint), "fingerprint": of its manifest's shards}.
  nlohmann::json data;
};

// What a checkpoint directory holds, as host memory: whole (unsharded) tensors laid out by
// `table` (the whole model's parameter table, Hugging Face names in model order), and the
// AdamW moments either whole or as a slice [begin, end) of the flat buffers (ZeRO-1 at tp 1
// and pp 1: each data-parallel rank writes its own slice file, with its global range).
// train/checkpointer.h assembles it from any layout.
struct CheckpointTensors {
  const ParamTable* table = nullptr;
  const float* params = nullptr;            // (P) the master weights
  const float *m = nullptr, *v = nullptr;   // (end - begin) the moments; null: no optimizer state
  int64_t begin = 0, end = 0;
};

// Writes checkpoint `dir` atomically (under <dir>.tmp, COMPLETE last, then renamed). With a
// slice of the moments, every rank of `group` calls this with its own (rank 0 also with the
// weights, which are whole on every rank); otherwise one caller writes everything.
void save_checkpoint(const std::string& dir, const CheckpointTensors& t, const TrainerState& st,
                     const nlohmann::json& config, const std::string& tokenizer_file = "",
                     Communicator* group = nullptr);
// The same for a whole model on one rank (tp 1, one pipeline stage) and its optimizer.
void save_checkpoint(const std::string& dir, const Model& model, AdamW* opt, const TrainerState& st,
                     const nlohmann::json& config, const std::string& tokenizer_file = "");
// The tokenizer a checkpoint's model reads: its tokenizer file if present, else the config's.
BpeTokenizer checkpoint_tokenizer(const std::string& dir, const std::string& config_tokenizer);
// Verifies the directory (format, marker covering every file, sizes, checksums, the fields of
// trainer.json) and returns trainer.json. Every problem is an Error naming the file.
nlohmann::json verify_checkpoint(const std::string& dir);
// The tensors resume reads are there with the shapes `cfg` gives (headers only): the weights,
// and with `optimizer` the moments (whole, or slices covering every parameter).
void verify_checkpoint_tensors(const std::string& dir, const ModelConfig& cfg, bool optimizer);
// Loads this rank's part of every parameter of `model` - any layout: a tensor-parallel shard or
// a pipeline stage takes its slice of the whole tensors through the table's global index
// (ParamEntry::for_each_run) - and, if opt is given, the moments in opt's range, from a whole
// optimizer file or from any layout's slices. No communication; shape mismatches throw naming
// the tensor. Returns trainer.json.
// verified: trainer.json as verify_checkpoint(dir) just returned it, so that the checksums are
// not computed twice (null: verify here).
nlohmann::json load_checkpoint(const std::string& dir, Model& model, AdamW* opt,
                               const nlohmann::json* verified = nullptr);

std::string checkpoint_dir_name(int64_t step);  // "step_000020"

// For the writers of a checkpoint (this file's and train/checkpoint_parts.h): trainer.json's
// content; the tokenizer file copied in under its format's name; and the seal - COMPLETE over
// every file of tmp_dir (sizes, SHA-256), fsync'ed, then tmp_dir renamed to dir.
nlohmann::json trainer_json(const TrainerState& st, const nlohmann::json& config);
void copy_tokenizer(const std::string& tokenizer_file, const std::string& dir);
// `known`: {file: {"bytes", "sha256"}} already computed by the files' writers (not re-read).
void seal_checkpoint(const std::string& tmp_dir, const std::string& dir, const nlohmann::json& known = nlohmann::json::object());

// The complete checkpoints (a COMPLETE marker; no .tmp) of a run directory, oldest step first.
std::vector<std::string> run_checkpoints(const std::string& run_dir);
// What --resume names: a checkpoint directory itself, or a run directory (its newest complete
// checkpoint). A run directory without one is an error saying so, never "a broken checkpoint".
std::string resolve_checkpoint(const std::string& path);
// Removes all but the newest `keep` complete checkpoints of run_dir (keep 0: none removed);
// returns the removed directories.
std::vector<std::string> prune_checkpoints(const std::string& run_dir, int64_t keep);

}  // namespace meshlm
