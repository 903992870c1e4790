// `meshlm bench`: timed training steps of a config, precision and layout.
#include "cli/commands.h"

#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "train/bench.h"

namespace meshlm::cli {

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time training steps of a model config, precision and layout");
  cmd->footer(
      "Runs --warmup untimed then --timed-steps timed training steps through the real trainer, on random\n"
      "tokens unless --data is given, writing nothing (a temporary run directory is removed).\n"
      "Prints medians over the timed steps (with the fastest and slowest step): ms/step, tokens/s,\n"
      "achieved model GFLOP/s (6 x parameters + 12 x L x C x T FLOPs per token), MFU against a peak\n"
      "measured once per machine with a 2048^3 GEMM (8192^3 on a GPU) in the compute dtype and kept in --peak-cache\n"
      "(or --peak-gflops), and the peak RSS; --breakdown adds\n"
      "the time per kernel of a step (GEMMs, attention, layernorm, loss, optimizer, ...).\n"
      "Takes the flags of `meshlm train` that shape a step (--n-layer ... --precision, --dp ...; not\n"
      "--steps, --out, --save-every or the logging flags, which it has no use for); works under\n"
      "mpirun (--dp defaults to the ranks / (tp x pp)). fp8 speed is simulated (bf16 arithmetic plus quantization, or fp8 codes widened) and says so,\n"
      "except with real fp8 GEMMs on fp8 tensor cores (--backend cuda on sm_89+; --fp8-gemm).\n"
      "Example (GPT-2 124M shape): meshlm bench --n-layer 12 --n-head 12 --n-embd 768\n"
      "  --vocab-size 50257 --seq-len 256 --max-seq-len 1024 --batch-size 4 --precision bf16");
  auto config_file = std::make_shared<std::string>();
  auto opt = std::make_shared<BenchOptions>();
  auto json_out = std::make_shared<bool>(false);
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--warmup", opt->warmup, "untimed steps first [default: 2]");
  cmd->add_option("--timed-steps", opt->steps, "timed steps [default: 10]");
  cmd->add_flag("--breakdown", opt->breakdown, "also time every kernel: where a step's time goes");
  cmd->add_flag("--json", *json_out, "print one JSON object (tokens_per_s, ms_per_step, mfu, peak_rss_mib, ...)");
  // Train-only keys bench would ignore are not its flags (an unknown flag is an error).
  flags.add_to(cmd, ConfigFlags::train_only_keys());
  cmd->callback([=]() {
    TrainConfig cfg;
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    BenchResult r;
    std::ostringstream quiet;  // the trainer's own log: shown only without --json
    if (!run_on_mesh(cfg, !flags.given("dp"), [&](Mesh& mesh) { r = bench(cfg, *opt, *json_out ? quiet : std::cout, &mesh); })) return;
    if (*json_out) {
      std::cout << r.to_json(cfg).dump() << "\n";
      return;
    }
    const bool sim = r.quantization_simulated;
    std::printf("bench   %s, %lld timed steps after %lld warm-up: median %.1f ms/step (%.1f-%.1f), %.0f tokens/s%s\n"
                "        %.1f model GFLOP/s, MFU %.1f%% of %.0f GFLOP/s (%s), peak RSS %.0f MiB\n",
                cfg.precision.c_str(), (long long)r.steps, (long long)opt->warmup, r.ms_per_step, r.ms_min, r.ms_max,
                r.tokens_per_s, sim ? (cfg.precision == "fp8" ? " (fp8 simulated)" : " (quantization simulated)") : "",
                r.gflops, 100 * r.mfu, r.peak_gflops, r.peak_how.c_str(), r.peak_rss_mib);
  });
}

}  // namespace meshlm::cli
