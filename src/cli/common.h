// What the subcommands share: every config key as a flag, running on the job's mesh (one
// error line, MPI_Abort on one rank's failure), the thread count, a model from a checkpoint.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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
  void add_to(CLI::App* cmd);
  void apply(TrainConfig& cfg) const;
};

// Runs fn on every rank of the job (one rank without mpirun) over the mesh cfg asks for. A bad
// config or layout is the same error on every rank: rank 0 prints it, every rank exits 1. An
// error later, on one rank only, aborts the whole job rather than leave the others waiting.
// Returns true on rank 0 (the rank that reports).
bool run_on_mesh(const TrainConfig& cfg, const std::function<void(Mesh&)>& fn);


// An fp32 model on `be` from a checkpoint's config, with its weights (cfg_out: that config).
std::unique_ptr<Model> load_model(const std::string& dir, Backend& be, TrainConfig* cfg_out);

// The --backend option of eval and sample (train and bench take it as a config key).
void add_backend_option(CLI::App* cmd, std::string& backend);

}  // namespace meshlm::cli
