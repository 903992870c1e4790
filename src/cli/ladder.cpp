// `meshlm ladder`: one model through a list of precision formats and plans (train/ladder.h).
#include "cli/commands.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "core/files.h"
#include "train/ladder.h"
#include "train/plot.h"

namespace meshlm::cli {

namespace fs = std::filesystem;

void add_ladder(CLI::App& app) {
  auto* cmd = app.add_subcommand("ladder", "Train one model through the precision ladder (fp32 ... 4-bit) and compare");
  cmd->footer(
      "Trains the model the flags describe (as `meshlm train`: the same data, seed, steps and token\n"
      "budget) once per entry, each in <out>/<entry>, then writes <out>/ladder.md (the table),\n"
      "ladder.json, ladder.svg (validation nats per byte against bits per weight and activation) and\n"
      "curves.svg/.png (every entry's loss curves). The default entries: fp32 and bf16 (--seeds\n"
      "seeds each: the run-to-run scatter), fp16, fp8 (delayed scaling), fp8-current, mxfp8, mxfp6,\n"
      "mxfp4 (naive), nvfp4+recipe, and nvfp4+recipe with the first and last blocks in bf16.\n"
      "--entries FILE gives others, one per line: name | precision | plan | on_instability | seed offset.\n"
      "A finished entry is not run again: after an interruption, the same command continues (an entry\n"
      "cut short resumes from its newest checkpoint, so pass --save-every for long entries).\n"
      "Every format below bf16 is simulated (real rounding and scales, bf16 arithmetic): its\n"
      "tokens/s is not the format's hardware speed. Example (docs/numerics.md, BENCHMARKS.md):\n"
      "  meshlm ladder --data data/shakespeare_bytes --n-layer 6 --n-head 6 --n-embd 384 --seq-len 128\n"
      "    --batch-size 4 --steps 2000 --eval-batches 64 --out runs/ladder");
  auto config_file = std::make_shared<std::string>();
  auto entries_file = std::make_shared<std::string>();
  auto seeds = std::make_shared<int>(2);
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--entries", *entries_file, "file of entries, one per line: name | precision | plan | on_instability | seed offset");
  cmd->add_option("--seeds", *seeds, "seeds for each of fp32 and bf16 in the default entries [default: 2]");
  flags.add_to(cmd, {"precision", "precision_plan", "on_instability"});
  cmd->callback([=]() {
    TrainConfig cfg;
    cfg.out = "runs/ladder";
    cfg.eval_every = 0;  // one evaluation, at the end of each entry
    cfg.plots = 0;
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    MESHLM_CHECK(cfg.dp * cfg.tp * cfg.pp == 1, "ladder: one rank (its entries run one after another)");
    std::vector<LadderEntry> entries;
    if (!entries_file->empty()) {
      std::ifstream f(*entries_file);
      MESHLM_CHECK(bool(f), *entries_file + ": cannot read");
      std::stringstream text;
      text << f.rdbuf();
      entries = parse_ladder(text.str());
    } else {
      entries = default_ladder(*seeds);
    }
    const std::vector<LadderRow> rows = run_ladder(cfg, entries, cfg.out, std::cout);
    nlohmann::json j = nlohmann::json::array();
    for (const LadderRow& r : rows) j.push_back(r.to_json());
    const std::string table = ladder_table(rows, cfg);
    const fs::path out(cfg.out);
    write_file_atomic((out / "ladder.json").string(), j.dump(2) + "\n");
    write_file_atomic((out / "ladder.md").string(), table);
    const std::string title = "meshlm ladder: " + cfg.model().describe() + ", " + std::to_string(rows.front().steps) + " steps";
    write_file_atomic((out / "ladder.svg").string(), ladder_svg(rows, title));
    std::vector<RunSeries> series;
    for (const LadderRow& r : rows) series.push_back(read_run_series((out / r.entry.name).string(), r.entry.name));
    write_loss_plot(series, title, (out / "curves.svg").string(), (out / "curves.png").string());
    std::cout << "\n" << table << "\nwritten: " << (out / "ladder.md").string() << ", ladder.json, ladder.svg, curves.svg, curves.png\n";
  });
}

}  // namespace meshlm::cli
