// What the subcommands share: every config key as a flag, running on the job's mesh (one
// error line, MPI_Abort on one rank's failure), the thread count, a model from a checkpoint.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "backend/backend.h"
#include "model/model.h"
#include "parallel/mesh.h"
#include "train/config.h"

namespace meshlm::cli {

// Every config key as a flag of a subcommand (train, bench): its text is kept, and applied
// over a config after the other sources.
struct ConfigFlags {
  std::shared_ptr<std::map<std::string, std::string>> values = std::make_shared<std::map<std::string, std::string>>();
  std::shared_ptr<std::map<std::string, CLI::Option*>> options = std::make_shared<std::map<std::string, CLI::Option*>>();
  // Every key but those in `skip`, grouped in --help (model, data, ...) with types and defaults.
  void add_to(CLI::App* cmd, const std::set<std::string>& skip = {});
  // The keys only a training run uses (steps, logging, checkpoints, ...): not flags of the
  // commands that time or plan steps (bench, plan).
  static std::set<std::string> train_only_keys();
  void apply(TrainConfig& cfg) const;
  bool given(const std::string& key) const;  // the flag is on the command line
};

// Runs fn on every rank of the job (one rank without mpirun) over the mesh cfg asks for. A bad
// config or layout is the same error on every rank: rank 0 prints it, every rank exits 1. An
// error later, on one rank only, aborts the whole job rather than leave the others waiting.
// Returns true on rank 0 (the rank that reports).
// dp_from_world: --dp was not given, so dp is the job's ranks / (tp x pp) (cfg is updated).
bool run_on_mesh(TrainConfig& cfg, bool dp_from_world, const std::function<void(Mesh&)>& fn);
// --layout auto: cfg's layout from the planner for `ranks` (the job's), with one line on stdout
// from rank 0 saying what it chose and why.
void apply_auto_layout(TrainConfig& cfg, int ranks, bool lead);


// The model keys from cfg.init_from's config.json (a bare model.safetensors: the keys as
// given). A model key set explicitly (`explicitly(key)`) to another value is an error naming
// both; vocab_size stays as asked under vocab_resize. Returns a line for the log ("" if none).
std::string adopt_hf_model(TrainConfig& cfg, const std::function<bool(const std::string&)>& explicitly);

// An fp32 model on `be` from a checkpoint's config, with its weights (cfg_out: that config).
std::unique_ptr<Model> load_model(const std::string& dir, Backend& be, TrainConfig* cfg_out);

// The --backend option of eval and sample (train and bench take it as a config key).
void add_backend_option(CLI::App* cmd, std::string& backend);

// "AMD EPYC (avx512f avx512_bf16; lacks amx_bf16 avx512_fp16)": what the kernels can use.
std::string cpu_summary();

}  // namespace meshlm::cli
