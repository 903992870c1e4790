#include "train/run_log.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "parallel/communicator.h"
#include "train/plot.h"

namespace meshlm {

namespace fs = std::filesystem;

namespace {

bool is_checkpoint_dir(const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  return e.is_directory() && name.rfind("step_", 0) == 0;
}

// A fresh run must not silently mix with (or overwrite) an earlier run in the same directory.
void prepare_fresh_run_dir(const std::string& dir, bool overwrite) {
  if (!fs::exists(dir)) return;
  const fs::path metrics = fs::path(dir) / "metrics.jsonl";
  bool has_run = fs::exists(metrics);
  for (const auto& e : fs::directory_iterator(dir)) has_run = has_run || is_checkpoint_dir(e);
  if (!has_run) return;
  MESHLM_CHECK(overwrite, dir + ": already holds a run (metrics.jsonl or step_* checkpoints); "
                              "continue it with --resume " + dir + "/step_NNNNNN, pick another --out, "
                              "or pass --overwrite");
  fs::remove(metrics);
  for (const auto& e : fs::directory_iterator(dir))
    if (is_checkpoint_dir(e)) fs::remove_all(e.path());
}

// Resuming into a run directory: drop metrics lines past the resumed step (an abandoned tail).
void truncate_metrics_after(const fs::path& metrics, int64_t step) {
  if (!fs::exists(metrics)) return;
  std::ifstream in(metrics);
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t(0)) > step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line from a crash
    }
    kept += line + "\n";
  }
  in.close();
  write_file_atomic(metrics.string(), kept);  // a kill here leaves the old file or the new one
}

}  // namespace

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// On a terminal a live progress line follows the log. Not under an MPI launcher: OpenMPI gives
// the ranks a pseudo-terminal even when mpirun's own output goes to a file.
RunLog::RunLog(std::ostream& out, bool lead)
    : out_(out), lead_(lead), tty_(lead && stdout_is_terminal() && !launched_by_mpi()) {}

void RunLog::open(const std::string& dir, bool resumed, int64_t step, bool overwrite, bool tensorboard) {
  if (!lead_) return;
  dir_ = dir;
  if (resumed) truncate_metrics_after(fs::path(dir) / "metrics.jsonl", step);
  else prepare_fresh_run_dir(dir, overwrite);
  fs::create_directories(dir);
  metrics_.emplace((fs::path(dir) / "metrics.jsonl").string(), resumed);
  if (tensorboard) tensorboard_ = std::make_unique<TensorBoardWriter>((fs::path(dir) / "tensorboard").string());
}

void RunLog::metrics(const nlohmann::ordered_json& line) {
  if (metrics_) metrics_->write(line);
  if (!tensorboard_) return;
  std::vector<std::pair<std::string, double>> scalars;  // every number of the line but the step
  for (auto it = line.begin(); it != line.end(); ++it) {
    if (it.key() == "step") continue;
    if (it->is_number()) scalars.emplace_back(it.key(), it->get<double>());
    if (it->is_array())  // pp_idle: one per stage
      for (size_t k = 0; k < it->size(); k++)
        if ((*it)[k].is_number()) scalars.emplace_back(it.key() + "/stage" + std::to_string(k), (*it)[k].get<double>());
  }
  tensorboard_->scalars(line.value("step", int64_t(0)), scalars);
}

void RunLog::plot(const std::string& title) {
  if (!lead_ || dir_.empty()) return;
  try {
    write_loss_plot({read_run_series(dir_)}, title, (fs::path(dir_) / "loss.svg").string(),
                    (fs::path(dir_) / "loss.png").string());
  } catch (const std::exception& e) {
    line(std::string("warning the loss plot was not written: ") + e.what() + "\n");
  }
}

void RunLog::line(const std::string& text) {
  if (!lead_) return;
  if (tty_) out_ << "\r\033[K";  // erase the progress line
  out_ << text;
  out_.flush();
}

void RunLog::progress(int64_t step, int64_t steps, double eta) {
  if (tty_) out_ << progress_bar(step, steps, eta) << std::flush;
}

}  // namespace meshlm
