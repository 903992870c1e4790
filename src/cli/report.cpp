// `meshlm report`: a run's numerics report as a table and an SVG plot.
#include "cli/commands.h"

#include <filesystem>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "precision/numerics.h"

namespace meshlm::cli {

void add_report(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "Render a run's numerics report (table + SVG plot)");
  cmd->footer(
      "Reads <run>/numerics.jsonl, written by `meshlm train --numerics-report N`: per layer\n"
      "(embedding, h.0 .. h.L-1, final) and tensor kind (weights, activations, grads), the\n"
      "largest magnitude and the fractions of values that are zero, would underflow to zero,\n"
      "would be subnormal, or overflow in the run's compute format, with the loss scale.\n"
      "Prints the last report as a table and the worst fractions over the run, and writes a\n"
      "plot of amax and underflow per layer over the steps (SVG, opens in any browser).");
  auto run = std::make_shared<std::string>();
  auto svg = std::make_shared<std::string>();
  cmd->add_option("run", *run, "run directory (or its numerics.jsonl)")->required();
  cmd->add_option("--svg", *svg, "plot file [default: <run>/numerics.svg]");
  cmd->callback([run, svg]() {
    namespace fs = std::filesystem;
    const fs::path jsonl = fs::is_directory(*run) ? fs::path(*run) / "numerics.jsonl" : fs::path(*run);
    const std::string plot = svg->empty() ? (jsonl.parent_path() / "numerics.svg").string() : *svg;
    render_numerics_report(jsonl.string(), plot, std::cout);
  });
}

}  // namespace meshlm::cli
