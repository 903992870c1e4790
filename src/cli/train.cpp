// `meshlm train`: a training run on the job's mesh, resumable.
#include "cli/commands.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "core/stop_signals.h"
#include "data/manifest.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace meshlm::cli {

namespace {

// runs/x for runs/x/step_000100 (or runs/x/step_000100/).
std::string run_dir_of(const std::string& checkpoint) {
  std::filesystem::path p = std::filesystem::absolute(checkpoint).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.parent_path().string();
}

const char* kFooter =
    "Every config key is also a flag (n_layer = --n-layer); booleans work bare (--shuffle) or with\n"
    "true/false, 1/0. Precedence: defaults < the resumed checkpoint's config < --config FILE (TOML,\n"
    "keys as above, at the top or in [sections]) < flags. vocab_size defaults to the data's\n"
    "manifest.json; --init-from DIR takes the model keys from DIR/config.json.\n"
    "Writes <out>/metrics.jsonl (one JSON object per step; eval lines carry val_loss), loss.svg and\n"
    "loss.png (redrawn at each eval and at the end; `meshlm plot` overlays runs), TensorBoard events\n"
    "with --tensorboard, and checkpoints <out>/step_NNNNNN at the end and every --save-every steps\n"
    "(--keep-last N keeps the newest N).\n"
    "--resume CK continues bit-identically: CK is a checkpoint, a run directory (its newest complete\n"
    "checkpoint) or `latest` (--out's). The run goes on in that run directory on the data it trained\n"
    "on (matched by checksums; --data if it moved). The layout is the job's, never the checkpoint's:\n"
    "one process resumes a dp2 x tp2 x pp2 checkpoint as it is; under mpirun --dp defaults to\n"
    "ranks / (tp x pp). Growing --steps stretches the cosine (a warning says so) unless\n"
    "--lr-decay-steps pins its horizon.\n"
    "Ctrl-C (SIGINT, SIGTERM, SIGUSR1, SIGHUP) finishes the current step and saves a checkpoint of\n"
    "it; a second cuts an eval short, a third exits at once. Under mpirun: kill -USR1 <mpirun pid>,\n"
    "or SIGTERM to the ranks (Slurm's scancel). A rank making no progress for --watchdog seconds\n"
    "ends the job naming it. docs/reliability.md.\n"
    "Precision (--precision): fp32; bf16 and fp16 keep fp32 master weights and Adam state\n"
    "(fp16 with a dynamic loss scale: overflowing steps are skipped and logged); fp16-pure is\n"
    "the naive all-fp16 recipe, for comparison; fp8 rounds the GEMM operands through e4m3/e5m2\n"
    "and multiplies them in fp8 on GPUs with fp8 tensor cores, in bf16 elsewhere (--fp8-gemm\n"
    "real|simulated|auto: a CPU's fp8 speed is not fp8 speed). Checkpoints hold fp32 masters, so\n"
    "--resume with another --precision continues a run in another mode. --numerics-report N\n"
    "writes <out>/numerics.jsonl for `meshlm report`. docs/numerics.md has the details.\n"
    "Layout (under mpirun -np dp*tp*pp): --dp splits the batch, --tp each layer, --pp the stack\n"
    "of layers into stages; a pipeline's micro-batches are the accumulation steps, so set\n"
    "--micro-batch-size below batch_size/dp (the bubble is (pp-1)/(m+pp-1) of a step).\n"
    "docs/parallel.md.";

}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a GPT-2 or Llama model (--arch) on token shards");
  cmd->footer(kFooter);
  auto config_file = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  ConfigFlags flags;
  flags.add_to(cmd);  // first: the groups appear in its order
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)")->group("Run");
  cmd->add_option("--resume", *resume,
                  "continue from a checkpoint, the newest of a run directory, or `latest` (of --out), "
                  "bit-identically, at the job's layout")->group("Checkpoints");
  cmd->add_flag("--overwrite", *overwrite, "start afresh in an --out that holds a run (removes its metrics and checkpoints)")
      ->group("Checkpoints");
  cmd->callback([=]() {
    StopListener listening;  // from here on a stop signal is a stop at a safe point, not an exit
    TrainConfig asked;  // what the file and flags alone say (--resume latest needs their --out)
    std::vector<std::string> file_keys;
    if (!config_file->empty()) file_keys = apply_toml_file(asked, *config_file);
    flags.apply(asked);
    auto explicitly = [&](const std::string& key) {
      return flags.given(key) || std::find(file_keys.begin(), file_keys.end(), key) != file_keys.end();
    };
    TrainConfig cfg;
    std::string resume_dir;
    if (!resume->empty()) {
      resume_dir = resolve_checkpoint(*resume == "latest" ? asked.out : *resume);
      cfg = checkpoint_config(resume_dir);
      bool has_optimizer = std::filesystem::exists(std::filesystem::path(resume_dir) / "optimizer.safetensors");
      for (const auto& e : std::filesystem::directory_iterator(resume_dir))
        has_optimizer = has_optimizer || e.path().filename().string().rfind("optimizer.", 0) == 0 ||
                        e.path().filename().string().rfind("part.", 0) == 0;  // parts carry their moments
      MESHLM_CHECK(has_optimizer, resume_dir + " holds weights only (no optimizer state: `meshlm import` wrote it); "
                                                "start from it with --init-from " + resume_dir);
      cfg.reset_layout();  // the job's layout, not the one the checkpoint was saved at
      // The paths a checkpoint records are hints: a resumed run writes into the checkpoint's
      // own run directory unless --out says otherwise (never into one recorded in a copy).
      cfg.out = run_dir_of(resume_dir);
    }
    const ModelConfig resumed_model = cfg.model();
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    if (resume_dir.empty() && !cfg.init_from.empty()) {
      const std::string line = adopt_hf_model(cfg, explicitly);
      if (!line.empty()) std::cout << line << "\n";
    }
    if (resume_dir.empty() && !explicitly("vocab_size") && !explicitly("init_from") && cfg.init_from.empty() &&
        manifest_vocab_size(cfg.data) > 0)
      cfg.vocab_size = manifest_vocab_size(cfg.data);  // the data's vocabulary unless told otherwise
    if (!resume_dir.empty()) {
      MESHLM_CHECK(std::filesystem::is_directory(cfg.data),
                   resume_dir + " was trained on " + cfg.data + ", which is not here; pass --data DIR (its " +
                       "manifest.json is matched against the checkpoint's)");
      const ModelConfig m = cfg.model();
      MESHLM_CHECK(m == resumed_model,
                   "the model shape asked for (" + m.describe() + ") differs from the checkpoint's (" +
                       resumed_model.describe() + ") in " + resume_dir);
    }
    TrainResult r;
    if (!run_on_mesh(cfg, !explicitly("dp"), [&](Mesh& mesh) { r = train(cfg, resume_dir, std::cout, *overwrite, &mesh); }))
      return;
    std::cout << "done    " << r.steps << " steps, last loss " << r.last_loss;
    if (r.val_loss >= 0) std::cout << ", val_loss " << r.val_loss;
    std::cout << ", " << int64_t(r.tokens_per_s) << " tok/s" << (r.fp8_simulated ? " (fp8 simulated)" : r.quantization_simulated ? " (quantization simulated)" : "") << ", peak RSS " << int64_t(r.peak_rss_mib)
              << " MiB";
    if (r.skipped_steps > 0) std::cout << ", " << r.skipped_steps << " steps skipped (fp16 overflow)";
    std::cout << "\n";
    if (r.interrupted && r.checkpoint.empty()) throw Error("interrupted before the first step; nothing was saved");
    if (r.interrupted) throw Error("interrupted; resume with --resume " + r.checkpoint);
  });
}

}  // namespace meshlm::cli
