// `meshlm plot`: runs' loss curves overlaid (train/plot.h).
#include "cli/commands.h"

#include <iostream>

#include "core/error.h"
#include "train/plot.h"

namespace meshlm::cli {

void add_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Overlay runs' loss curves (train and val loss, lr, grad norm, tokens/s)");
  cmd->footer(
      "Reads each RUN's metrics.jsonl and draws every run in its own colour, one panel per metric:\n"
      "train loss (solid) with val loss (dashed, a dot per evaluation), learning rate, gradient norm\n"
      "and tokens/s over steps. Writes --out as SVG and PNG (the extension of --out picks the name\n"
      "of both: plot.svg and plot.png). A run also redraws its own <run>/loss.svg and loss.png at\n"
      "each eval and at its end. Example (the precision comparison):\n"
      "  meshlm plot runs/fp32 runs/bf16 runs/fp16 --out runs/precision.png");
  struct Opts {
    std::vector<std::string> runs;
    std::string out = "plot.png", title;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("runs", o->runs, "run directories (each with a metrics.jsonl)")->required();
  cmd->add_option("--out", o->out, "picture to write; its .svg and .png siblings both [default: plot.png]");
  cmd->add_option("--title", o->title, "title [default: the runs' names]");
  cmd->callback([o]() {
    std::vector<RunSeries> series;
    std::string names;
    for (const auto& r : o->runs) {
      series.push_back(read_run_series(r));
      MESHLM_CHECK(!series.back().step.empty(), r + "/metrics.jsonl: no training steps yet");
      names += (names.empty() ? "" : " vs ") + series.back().name;
    }
    std::string stem = o->out;
    for (const char* ext : {".png", ".svg"})
      if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ext) == 0) stem.resize(stem.size() - 4);
    write_loss_plot(series, o->title.empty() ? names : o->title, stem + ".svg", stem + ".png");
    std::cout << "plotted " << series.size() << " run" << (series.size() > 1 ? "s" : "") << ": " << stem << ".svg, "
              << stem << ".png\n";
  });
}

}  // namespace meshlm::cli
