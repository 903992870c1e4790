// Loss-curve pictures of runs: train loss and val loss, learning rate, gradient norm and
// tokens/s over steps, one panel each, every run in its own colour (overlaid, as one compares
// precisions or layouts). Read from each run's metrics.jsonl; drawn once as a list of shapes,
// then written as SVG (by hand: text XML-escaped) and as PNG (cairo).
#pragma once
#include <string>
#include <vector>

namespace meshlm {

struct RunSeries {
  std::string name;  // the legend's label (the run directory's name)
  std::vector<double> step, loss, lr, grad_norm, tokens_per_s;  // per training step
  std::vector<double> val_step, val_loss;                        // per evaluation
};

// A run's series from <run_dir>/metrics.jsonl (a torn last line is skipped).
RunSeries read_run_series(const std::string& run_dir, const std::string& name = "");

// Writes `svg_path` and `png_path` (either may be "") atomically. Throws meshlm::Error on an
// empty list or a file that cannot be written.
void write_loss_plot(const std::vector<RunSeries>& runs, const std::string& title, const std::string& svg_path,
                     const std::string& png_path);

// The text of an SVG document, XML-escaped (&, <, >, ", ').
std::string xml_escape(const std::string& s);

}  // namespace meshlm
