#include "cli/common.h"

#include <omp.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace meshlm::cli {

void ConfigFlags::add_to(CLI::App* cmd) {
  const TrainConfig defaults;
  for (const auto& k : config_keys())
    (*options)[k.key] = cmd->add_option(flag_name(k.key), (*values)[k.key],
                                        k.help + " [default: " + k.get(defaults).dump() + "]");
}
void ConfigFlags::apply(TrainConfig& cfg) const {
  for (const auto& [key, opt] : *options)
    if (opt->count() > 0) set_config_value(cfg, key, values->at(key), flag_name(key));
}

bool run_on_mesh(const TrainConfig& cfg, const std::function<void(Mesh&)>& fn) {
  auto world = make_world_communicator();
  std::unique_ptr<Mesh> mesh;
  try {
    cfg.validate();
    mesh = std::make_unique<Mesh>(*world, MeshShape{int(cfg.dp), int(cfg.tp), int(cfg.pp)});
  } catch (const Error& e) {
    if (world->rank() == 0) std::fprintf(stderr, "meshlm: error: %s\n", e.what());
    world.reset();
    finalize_world();
    std::exit(1);
  }
  try {
    fn(*mesh);
  } catch (const std::exception& e) {
    if (world->size() == 1) throw;
    std::fprintf(stderr, "meshlm: error on rank %d of %d: %s\n", world->rank(), world->size(), e.what());
    std::fflush(stderr);
    world->abort(1);
  }
  const bool lead = world->rank() == 0;
  mesh.reset();
  world.reset();
  finalize_world();
  return lead;
}


// Builds an fp32 model from a checkpoint's config and loads its weights.
std::unique_ptr<Model> load_model(const std::string& dir, Backend& be, TrainConfig* cfg_out) {
  const nlohmann::json trainer = verify_checkpoint(dir);  // once: SHA-256 of every file
  TrainConfig cfg = checkpoint_config(trainer, dir);
  auto model = std::make_unique<Model>(cfg.model(), be);
  load_checkpoint(dir, *model, nullptr, &trainer);
  if (cfg_out) *cfg_out = cfg;
  return model;
}

void add_backend_option(CLI::App* cmd, std::string& backend) {
  cmd->add_option("--backend", backend, std::string("the kernels and memory: ") + backend_names() + " [default: cpu]");
}

}  // namespace meshlm::cli
