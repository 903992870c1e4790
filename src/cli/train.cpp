// `meshlm train`: a training run on the job's mesh, resumable.
#include "cli/commands.h"

#include <filesystem>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "core/stop_signals.h"
#include "train/trainer.h"

namespace meshlm::cli {

namespace {

// runs/x for runs/x/step_000100 (or runs/x/step_000100/).
std::string run_dir_of(const std::string& checkpoint) {
  std::filesystem::path p = std::filesystem::absolute(checkpoint).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.parent_path().string();
}

}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a GPT-2 or Llama model (--arch) on token shards");
  cmd->footer(
      "Every config key is also a flag (n_layer = --n-layer). Precedence: defaults < the\n"
      "resumed checkpoint's config < --config FILE (TOML, keys as above) < flags.\n"
      "Writes <out>/metrics.jsonl (one JSON object per step; eval lines carry val_loss) and a\n"
      "checkpoint directory <out>/step_NNNNNN at the end and every --save-every steps.\n"
      "Ctrl-C (SIGINT, SIGTERM, SIGUSR1, SIGHUP) finishes the current step and saves a checkpoint of\n"
      "it; a second cuts an eval short, a third exits at once. Under mpirun: kill -USR1 <mpirun pid>,\n"
      "or SIGTERM to the ranks (Slurm's scancel). --resume continues in the checkpoint's own run\n"
      "directory (unless --out) on the data it trained on (matched by checksums; --data if it moved).\n"
      "A rank making no progress for --watchdog seconds ends the job naming it. docs/reliability.md.\n"
      "Precision (--precision): fp32; bf16 and fp16 keep fp32 master weights and Adam state\n"
      "(fp16 with a dynamic loss scale: overflowing steps are skipped and logged); fp16-pure is\n"
      "the naive all-fp16 recipe, for comparison; fp8 simulates e4m3/e5m2 GEMM operands (real\n"
      "rounding, bf16 arithmetic: its speed is not fp8 speed). Checkpoints hold fp32 masters, so\n"
      "--resume with another --precision continues a run in another mode. --numerics-report N\n"
      "writes <out>/numerics.jsonl for `meshlm report`. docs/numerics.md has the details.\n"
      "Layout (under mpirun -np dp*tp*pp): --dp splits the batch, --tp each layer, --pp the stack\n"
      "of layers into stages; a pipeline's micro-batches are the accumulation steps, so set\n"
      "--micro-batch-size below batch_size/dp (the bubble is (pp-1)/(m+pp-1) of a step).\n"
      "Checkpoints hold whole tensors: --resume works at any layout. docs/parallel.md.");
  auto config_file = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--resume", *resume,
                  "checkpoint directory to continue from (bit-identical); the run goes on in its directory "
                  "unless --out is given, on the data it was trained on (matched by checksums) unless --data is");
  cmd->add_flag("--overwrite", *overwrite, "start afresh in an --out that holds a run (removes its metrics and checkpoints)");
  flags.add_to(cmd);
  cmd->callback([=]() {
    StopListener listening;  // from here on a stop signal is a stop at a safe point, not an exit
    TrainConfig cfg;
    if (!resume->empty()) {
      cfg = checkpoint_config(*resume);
      // The paths a checkpoint records are hints: a resumed run writes into the checkpoint's
      // own run directory unless --out says otherwise (never into one recorded in a copy).
      cfg.out = run_dir_of(*resume);
    }
    const ModelConfig resumed_model = cfg.model();
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    if (!resume->empty()) {
      MESHLM_CHECK(std::filesystem::is_directory(cfg.data),
                   *resume + " was trained on " + cfg.data + ", which is not here; pass --data DIR (its " +
                       "manifest.json is matched against the checkpoint's)");
      const ModelConfig m = cfg.model();
      MESHLM_CHECK(m == resumed_model,
                   "the model shape asked for (" + m.describe() + ") differs from the checkpoint's (" +
                       resumed_model.describe() + ") in " + *resume);
    }
    TrainResult r;
    if (!run_on_mesh(cfg, [&](Mesh& mesh) { r = train(cfg, *resume, std::cout, *overwrite, &mesh); })) return;
    std::cout << "done    " << r.steps << " steps, last loss " << r.last_loss;
    if (r.val_loss >= 0) std::cout << ", val_loss " << r.val_loss;
    std::cout << ", " << int64_t(r.tokens_per_s) << " tok/s" << (r.fp8_simulated ? " (fp8 simulated)" : "") << ", peak RSS " << int64_t(r.peak_rss_mib)
              << " MiB";
    if (r.skipped_steps > 0) std::cout << ", " << r.skipped_steps << " steps skipped (fp16 overflow)";
    std::cout << "\n";
    if (r.interrupted && r.checkpoint.empty()) throw Error("interrupted before the first step; nothing was saved");
    if (r.interrupted) throw Error("interrupted; resume with --resume " + r.checkpoint);
  });
}

}  // namespace meshlm::cli
