#include "cli/common.h"

#include <omp.h>

#include <cstdio>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/threads.h"
#include "train/checkpoint.h"
#include "train/hf_import.h"
#include "train/memory_estimate.h"
#include "train/cluster.h"
#include "train/planner.h"
#include "train/trainer.h"

namespace meshlm::cli {

// Groups in --help in this order (CLI11 lists groups as first used).
void ConfigFlags::add_to(CLI::App* cmd, const std::set<std::string>& skip) {
  const TrainConfig defaults;
  static const char* kGroups[] = {"model", "data", "optimizer", "precision", "parallel layout", "checkpoints", "logging", "run"};
  for (const char* group : kGroups)
    for (const auto& k : config_keys()) {
      if (config_group(k.key) != group || skip.count(k.key)) continue;
      const nlohmann::json d = k.get(defaults);
      std::string shown = d.is_string() ? d.get<std::string>() : d.dump();
      if (k.kind == ConfigKind::boolean) shown = d.get<int64_t>() ? "true" : "false";
      if (shown.empty()) shown = "\"\"";
      CLI::Option* o = cmd->add_option(flag_name(k.key), (*values)[k.key], k.help + " [default: " + shown + "]");
      o->group(std::string(1, char(std::toupper(group[0]))) + (group + 1));
      const char* type = k.kind == ConfigKind::integer ? "INT" : k.kind == ConfigKind::real ? "FLOAT"
                         : k.kind == ConfigKind::text  ? "TEXT" : "[BOOL]";
      o->type_name(type);
      if (k.kind == ConfigKind::boolean) o->expected(0, 1);  // bare: true; or true/false, 1/0
      (*options)[k.key] = o;
    }
}
void ConfigFlags::apply(TrainConfig& cfg) const {
  for (const auto& [key, opt] : *options)
    if (opt->count() > 0) set_config_value(cfg, key, values->at(key), flag_name(key));
}
bool ConfigFlags::given(const std::string& key) const {
  auto it = options->find(key);
  return it != options->end() && it->second->count() > 0;
}

bool run_on_mesh(TrainConfig& cfg, bool dp_from_world, const std::function<void(Mesh&)>& fn) {
  auto world = make_world_communicator();
  std::unique_ptr<Mesh> mesh;
  try {
    if (cfg.layout == "auto") apply_auto_layout(cfg, world->size(), world->rank() == 0);
    if (dp_from_world && cfg.tp * cfg.pp > 0 && world->size() % (cfg.tp * cfg.pp) == 0)
      cfg.dp = world->size() / (cfg.tp * cfg.pp);  // --dp not given: the rest of the job's ranks
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


std::set<std::string> ConfigFlags::train_only_keys() {
  return {"steps", "eval_every", "eval_batches", "save_every", "keep_last", "checkpoints", "save_every_minutes", "out",
          "numerics_report", "profile", "log_every", "tensorboard", "plots", "sample_every", "sample_tokens",
          "sample_prompt", "allow_data_change", "inject_inf_at_step"};
}

void apply_auto_layout(TrainConfig& cfg, int ranks, bool lead) {
  const MachineProfile m = load_machine(cfg.machine, ranks);
  const Prediction p = choose_layout(cfg, ranks, m, m.device_memory_bytes > 0 ? m.device_memory_bytes : memory_available().bytes);
  if (lead)
    std::printf("layout  auto: %s, predicted %.1f ms/step (%s; %s) from %s\n", p.layout().c_str(), p.step_s * 1e3,
                p.dominant().c_str(), m.cpu.empty() ? "this machine" : m.cpu.c_str(), cfg.machine.c_str());
}

std::string adopt_hf_model(TrainConfig& cfg, const std::function<bool(const std::string&)>& explicitly) {
  const HfSource src = locate_hf_source(cfg.init_from);
  TrainConfig hf = cfg;
  std::string from = src.config;
  if (src.config.empty() && std::filesystem::exists(std::filesystem::path(cfg.init_from) / "trainer.json")) {
    hf.set_model(checkpoint_config(cfg.init_from).model());  // a meshlm checkpoint: its own model keys
    from = cfg.init_from + "/trainer.json";
  } else if (src.config.empty()) {
    return "";
  } else {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(std::ifstream(src.config));
    } catch (const nlohmann::json::exception& e) {
      throw Error(src.config + ": not valid JSON (" + e.what() + ")");
    }
    hf.set_model(model_config_from_hf(j, src.config));
  }
  if (cfg.vocab_resize == 1) hf.vocab_size = cfg.vocab_size;
  for (const auto& k : config_keys()) {
    if (!is_model_key(k.key) || !explicitly(k.key) || k.get(cfg) == k.get(hf)) continue;
    // Llama's positions are a computed table: a shorter one is the same model.
    if (k.key == "max_seq_len" && hf.arch == "llama" && cfg.max_seq_len > 0 && cfg.max_seq_len <= hf.max_seq_len) continue;
    throw Error(flag_name(k.key) + " " + k.get(cfg).dump() + " contradicts " + from + " (" + k.get(hf).dump() +
                ")" + (k.key == "vocab_size" ? "; pass --vocab-resize to change the vocabulary" : ""));
  }
  const int64_t keep_positions = cfg.max_seq_len;
  cfg = hf;
  if (hf.arch == "llama" && explicitly("max_seq_len") && keep_positions > 0) cfg.max_seq_len = keep_positions;
  return "model   from " + from + ": " + cfg.model().describe();
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

std::string cpu_summary() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line) && flags.empty())
    if (line.rfind("flags", 0) == 0) flags = line + " ";
  const std::string model = cpu_model_name();
  std::string have, lack;
  for (const char* f : {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}) {
    std::string& into = flags.find(std::string(" ") + f + " ") != std::string::npos ? have : lack;
    into += (into.empty() ? "" : " ") + std::string(f);
  }
  return model + " (" + (have.empty() ? "none of the AVX-512 features" : have) + (lack.empty() ? "" : "; lacks " + lack) +
         ")";
}


}  // namespace meshlm::cli
