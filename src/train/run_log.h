// What a run leaves for people: the console lines (rank 0 only), <run>/metrics.jsonl (one JSON
// object per step and per evaluation, flushed at once), and on a terminal a live progress line
// under the log. Also the run directory's rules: a fresh run refuses a directory that holds a
// run unless told to overwrite it; a resumed run drops the metrics lines past its step.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "train/metrics.h"
#include "train/tensorboard.h"

namespace meshlm {

class RunLog {
 public:
  // Only the lead rank writes; the others' out() is a null stream.
  RunLog(std::ostream& out, bool lead);
  std::ostream& out() { return lead_ ? out_ : null_; }
  // Prepares `dir` (fresh: refused if it holds a run unless `overwrite`, which removes its
  // metrics and checkpoints; resumed: metrics past `step` dropped) and opens metrics.jsonl.
  // With `tensorboard`, every metrics line also goes to <dir>/tensorboard as scalars.
  void open(const std::string& dir, bool resumed, int64_t step, bool overwrite, bool tensorboard = false);
  void metrics(const nlohmann::ordered_json& line);
  // Redraws <dir>/loss.svg and loss.png from metrics.jsonl (train/plot.h); a failure to draw is
  // a warning, never the end of the run.
  void plot(const std::string& title);
  // A line of the log (ends with a newline), erasing the progress line first.
  void line(const std::string& text);
  void progress(int64_t step, int64_t steps, double eta_seconds);

 private:
  std::ostream& out_;
  std::ostream null_{nullptr};
  bool lead_;
  bool tty_;
  std::optional<MetricsLog> metrics_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::string dir_;
};

// printf-style formatting of one number, for the log lines.
std::string fmt(const char* f, double x);

}  // namespace meshlm
