// `meshlm plan`: calibrate a machine, predict and rank every layout of a rank count, and check
// the predictions by measuring some of them.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "train/bench.h"
#include "model/model.h"
#include "model/unit.h"
#include "train/cluster.h"
#include "train/memory_estimate.h"
#include "train/planner.h"

namespace meshlm::cli {

namespace {

struct PlanOptions {
  std::string machine = "meshlm_machine.json";
  int ranks = 0;  // 0: the job's
  int top = 10, measure = 0, repeats = 2, explain = 0;
  bool calibrate = false, quick = false, predict = false;
};

// --predict: the given layout's prediction, its breakdown and memory, one line each; and what
// one block keeps per micro-batch (to compare with published activation formulas).
void print_one(const Prediction& p, int64_t tokens) {
  double block = 0;
  const TrainConfig& c = p.cfg;
  for (const UnitCost& u : unit_costs(c.model(), c.plan(), 0, c.precision == "fp32" ? DType::fp32 : DType::bf16,
                                      c.micro_batch(), c.seq_len))
    if (block == 0 && is_block_unit(u.unit))
      for (const Cost& r : u.ops)
        if (r.kind == Cost::Kind::saved) block += double(r.bytes);
  std::printf("saved per block per micro-batch: %.1f MiB\n", block / double(1 << 20));
  std::printf("predicted %s: %.1f ms per step, %.0f tokens/s, %.0f MiB per rank (activations %.0f MiB; rank 0 %.0f MiB), "
              "bubble %.1f%%; %s\n",
              p.layout().c_str(), p.step_s * 1e3, double(tokens) / p.step_s, p.memory_bytes / double(1 << 20),
              p.activation_bytes / double(1 << 20), p.first_stage_bytes / double(1 << 20), 100.0 * p.bubble,
              p.dominant().c_str());
  std::printf("predicted ms per step:");
  for (const auto& [kind, s] : p.breakdown) std::printf(" %s %.1f;", kind.c_str(), s * 1e3);
  std::printf("\n");
}

void print_predictions(const std::vector<Prediction>& ps, int top, int64_t tokens) {
  std::printf("%-4s %-50s %10s %10s %10s  %s\n", "rank", "layout (dp x tp x pp, micro-batch, ZeRO, recompute)",
              "step ms", "tokens/s", "MiB/rank", "dominant costs");
  for (int i = 0; i < std::min<int>(top, int(ps.size())); i++) {
    const Prediction& p = ps[size_t(i)];
    std::printf("%-4d %-50s %10.1f %10.0f %10.0f  %s%s\n", i + 1, p.layout().c_str(), p.step_s * 1e3,
                double(tokens) / p.step_s, p.memory_bytes / double(1 << 20), p.dominant().c_str(),
                p.fits ? "" : " (does not fit)");
  }
}

// The layouts to measure: the top k, then every n-th of the rest, up to k more.
std::vector<size_t> measured_set(size_t n, int k) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < n && int(idx.size()) < k; i++) idx.push_back(i);
  const size_t stride = std::max<size_t>(1, (n - idx.size()) / size_t(std::max(1, k)));
  for (size_t i = idx.size() + stride / 2; i < n && int(idx.size()) < 2 * k; i += stride) idx.push_back(i);
  return idx;
}

// Runs each chosen layout through `meshlm bench`, alternated over `repeats` rounds, and prints
// predicted against measured: the step (median of the rounds, with their spread) and rank 0's
// memory (the buffers the trainer holds against the formula; resident memory needs a process
// per layout: bench/plan_memory.sh).
void measure(Communicator& world, const std::vector<Prediction>& ps, const PlanOptions& o) {
  const std::vector<size_t> idx = measured_set(ps.size(), o.measure);
  std::vector<std::vector<double>> ms(idx.size());
  std::vector<double> held(idx.size(), 0.0);
  BenchOptions bo;
  bo.warmup = 1;
  bo.steps = 3;
  for (int round = 0; round < o.repeats; round++)
    for (size_t j = 0; j < idx.size(); j++) {
      TrainConfig c = ps[idx[j]].cfg;
      Mesh mesh(world, MeshShape{int(c.dp), int(c.tp), int(c.pp)});
      std::ostringstream quiet;
      const BenchResult r = bench(c, bo, quiet, &mesh);
      ms[j].push_back(r.ms_per_step);
      held[j] = r.held_mib;
      if (world.rank() == 0) std::fprintf(stderr, "\rmeasured %zu of %zu", round * idx.size() + j + 1, idx.size() * size_t(o.repeats));
    }
  if (world.rank() != 0) return;
  std::printf("\n%-4s %-50s %12s %12s %10s %8s %10s %10s %8s\n", "rank", "layout", "predicted ms", "measured ms", "spread",
              "error", "rank 0 MiB", "held MiB", "error");
  double sum = 0, worst = 0, fastest = 1e30, first = 0, mem_worst = 0;
  for (size_t j = 0; j < idx.size(); j++) {
    std::vector<double> v = ms[j];
    std::sort(v.begin(), v.end());
    const double med = v[v.size() / 2], pred = ps[idx[j]].step_s * 1e3, err = (pred - med) / med;
    const double pmib = ps[idx[j]].first_stage_bytes / double(1 << 20), merr = (pmib - held[j]) / held[j];
    if (j == 0) first = med;
    sum += std::fabs(err);
    worst = std::max(worst, std::fabs(err));
    mem_worst = std::max(mem_worst, std::fabs(merr));
    fastest = std::min(fastest, med);
    std::printf("%-4zu %-50s %12.1f %12.1f %9.1f%% %+7.1f%% %10.1f %10.1f %+7.1f%%\n", idx[j] + 1, ps[idx[j]].layout().c_str(),
                pred, med, 100.0 * (v.back() - v.front()) / med, 100.0 * err, pmib, held[j], 100.0 * merr);
  }
  std::printf("step time error: mean %.1f%%, max %.1f%% over %zu layouts; the planner's first choice measured %.1f%% "
              "from the fastest measured; memory (held against predicted, rank 0) within %.1f%%\n",
              100.0 * sum / double(idx.size()), 100.0 * worst, idx.size(), 100.0 * (first / fastest - 1), 100.0 * mem_worst);
}

}  // namespace

void add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand("plan", "Predict the step time and memory of every parallel layout and rank them");
  cmd->footer(
      "Takes the model and training flags of `meshlm train` (--config, --n-layer ..., --batch-size, --seq-len,\n"
      "--precision); the layout keys (--dp --tp --pp --micro-batch-size --zero --recompute --sequence-parallel\n"
      "--pp-schedule --pp-virtual --pp-layers) are what it searches. Every layout of --ranks ranks is predicted from the layers'\n"
      "cost records and a machine profile, and the fastest that fit in memory are printed with their\n"
      "dominant costs. The profile is measured on this machine by\n"
      "  mpirun -np N meshlm plan --calibrate --machine FILE   (GEMMs over a grid of shapes, attention,\n"
      "memory bandwidth, AdamW, and each collective per group size, on all N ranks at once), one entry\n"
      "per rank count. --measure K then runs the top K layouts and K others through `meshlm bench`\n"
      "(under mpirun with --ranks ranks), alternated --repeats times, and prints predicted against measured.\n"
      "--machine may instead name a cluster: a TOML description (devices per node, peak rates, memory,\n"
      "links; docs/parallel.md) or a preset: a100-80gb, h100-80gb, h200 (8-GPU nodes with InfiniBand).\n"
      "--predict prices only the layout the layout flags give.");
  auto config_file = std::make_shared<std::string>();
  auto o = std::make_shared<PlanOptions>();
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--machine", o->machine,
                  "machine profile file, cluster .toml or preset (a100-80gb, h100-80gb, h200) [default: meshlm_machine.json]");
  cmd->add_option("--ranks", o->ranks, "ranks to plan for [default: the job's]");
  cmd->add_option("--top", o->top, "layouts to print [default: 10]");
  cmd->add_option("--measure", o->measure, "measure the top K layouts and K others [default: 0]");
  cmd->add_option("--repeats", o->repeats, "measurement rounds, alternated [default: 2]");
  cmd->add_option("--explain", o->explain, "print the predicted time per kind of the layout ranked N (1: the first)");
  cmd->add_flag("--calibrate", o->calibrate, "measure this machine on the job's ranks into --machine");
  cmd->add_flag("--quick", o->quick, "with --calibrate: a coarse grid, in seconds (a first look; tests)");
  cmd->add_flag("--predict", o->predict, "predict the layout the layout flags give (--dp --tp --pp ...) instead of searching");
  // the layout keys are what it searches (or, with --predict, prices); machine is its own --machine
  std::set<std::string> skip = ConfigFlags::train_only_keys();
  skip.insert({"layout", "machine"});
  flags.add_to(cmd, skip);
  cmd->callback([=]() {
    TrainConfig cfg;
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    auto world = make_world_communicator();
    const int ranks = o->predict ? int(cfg.dp * cfg.tp * cfg.pp) : o->ranks > 0 ? o->ranks : world->size();
    if (!o->predict) {
      cfg.dp = cfg.tp = cfg.pp = 1;
      cfg.micro_batch_size = 0;
    }
    try {
      if (o->calibrate) {
        std::unique_ptr<Backend> be = make_backend(cfg.backend);
        Mesh mesh(*world, MeshShape{world->size(), 1, 1});
        std::ostringstream quiet;
        MachineProfile p = calibrate_machine(*be, mesh, world->rank() == 0 ? std::cout : quiet, o->quick);
        calibrate_trainer(p, *world, world->rank() == 0 ? std::cout : quiet);
        p.cpu = cpu_summary();
        if (world->rank() == 0) save_machine_profile(o->machine, p);
        if (world->rank() == 0) std::cout << "wrote the profile for " << p.ranks << " rank(s) to " << o->machine << "\n";
      } else {
        const MachineProfile m = load_machine(o->machine, ranks);
        const double limit = m.device_memory_bytes > 0 ? m.device_memory_bytes
                                                       : memory_available().bytes * double(world->size()) / double(ranks);
        if (o->predict) {
          cfg.validate();
          Prediction p = predict_step(cfg, m);
          if (world->rank() == 0) print_one(p, cfg.batch_size * cfg.seq_len);
          if (world->rank() == 0 && p.memory_bytes > limit)
            std::printf("note    it does not fit: %.0f MiB per rank of %.0f\n", p.memory_bytes / double(1 << 20), limit / double(1 << 20));
          world.reset();
          finalize_world();
          return;
        }
        const std::vector<Prediction> ps = plan_layouts(cfg, ranks, m, limit);
        MESHLM_CHECK(!ps.empty(), "no valid layout of " + std::to_string(ranks) + " ranks for this model and batch");
        if (world->rank() == 0) {
          std::printf("plan    %zu layouts of %d ranks for %s, batch %lld x %lld tokens, %s (profile: %s)\n", ps.size(),
                      ranks, cfg.model().describe().c_str(), (long long)cfg.batch_size, (long long)cfg.seq_len,
                      cfg.precision.c_str(), m.cpu.c_str());
          print_predictions(ps, o->top, cfg.batch_size * cfg.seq_len);
          if (o->explain > 0 && o->explain <= int(ps.size())) {
            const Prediction& p = ps[size_t(o->explain - 1)];
            std::printf("layout %d (%s), predicted ms per step:\n", o->explain, p.layout().c_str());
            for (const auto& [kind, s] : p.breakdown) std::printf("  %-20s %8.1f\n", kind.c_str(), s * 1e3);
          }
        }
        if (o->measure > 0) {
          MESHLM_CHECK(world->size() == ranks, "--measure runs the layouts: start it with mpirun -np " + std::to_string(ranks));
          measure(*world, ps, *o);
        }
      }
    } catch (const Error& e) {
      if (world->rank() == 0) std::fprintf(stderr, "meshlm: error: %s\n", e.what());
      world->abort(1);
    }
    world.reset();
    finalize_world();
  });
}

}  // namespace meshlm::cli
