#include "train/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace meshlm {

namespace fs = std::filesystem;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* phase_name(Watchdog::Phase p) {
  switch (p) {
    case Watchdog::Phase::setup: return "setup";
    case Watchdog::Phase::first_step: return "first step";
    case Watchdog::Phase::step: return "step";
    case Watchdog::Phase::eval: return "eval";
    case Watchdog::Phase::save: return "save";
  }
  return "?";
}

std::string host_name() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string rank_file(const std::string& dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank%05d.json", rank);
  return (fs::path(dir) / name).string();
}

}  // namespace

Watchdog::Watchdog(double seconds, const std::string& run_dir, int rank, int world_size)
    : seconds_(seconds),
      dir_((fs::path(run_dir) / ".ranks").string()),
      rank_(rank),
      size_(world_size),
      host_(host_name()) {
  last_progress_ns_ = now_ns();
  step_allowance_ = seconds;
  if (seconds_ <= 0) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);  // no side channel without it: the message names this rank only
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::error_code ec;
  fs::remove(rank_file(dir_, rank_), ec);
  fs::remove(dir_, ec);  // the last rank out removes the directory (fails while others remain)
}

void Watchdog::enter(Phase phase, const char* what, int64_t step) {
  phase_ = int(phase);
  what_ = what;
  step_ = step;
  last_progress_ns_ = now_ns();
}

void Watchdog::step_done(double seconds) {
  step_times_.push_back(seconds);
  if (step_times_.size() > 21) step_times_.erase(step_times_.begin());
  std::vector<double> t = step_times_;
  std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
  step_allowance_ = std::max(seconds_, 20.0 * t[t.size() / 2]);
  last_progress_ns_ = now_ns();
}

double Watchdog::allowance(Phase phase) const {
  const double base = step_allowance_.load();
  return phase == Phase::step ? base : 4.0 * base;
}

void Watchdog::run() {
  beat(0);
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
    const double quiet = double(now_ns() - last_progress_ns_.load()) * 1e-9;
    beat(quiet);
    if (quiet > allowance(Phase(phase_.load()))) expire(quiet);
  }
}

// This rank's heartbeat: written under a temporary name and renamed (readers never see a part).
void Watchdog::beat(double quiet_s) {
  const nlohmann::json j = {{"rank", rank_},
                            {"host", host_},
                            {"pid", ::getpid()},
                            {"step", step_.load()},
                            {"phase", phase_name(Phase(phase_.load()))},
                            {"in", what_.load()},
                            {"quiet_s", quiet_s},
                            {"wall", wall_seconds()}};
  const std::string path = rank_file(dir_, rank_), tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump() << "\n";
    if (!out) return;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
}

// No progress for too long: say who is missing, then end without any MPI call.
void Watchdog::expire(double quiet_s) {
  std::ostringstream msg;
  msg << "meshlm: watchdog: rank " << rank_ << " of " << size_ << " made no progress for " << int(quiet_s)
      << " s (allowance " << int(allowance(Phase(phase_.load()))) << " s) at step " << step_.load() << ", in "
      << what_.load() << ".";
  const double now = wall_seconds();
  std::vector<std::string> stopped, waiting;
  for (int r = 0; r < size_; r++) {
    if (r == rank_) continue;
    nlohmann::json j;
    try {
      std::ifstream in(rank_file(dir_, r));
      if (!in) {
        stopped.push_back("rank " + std::to_string(r) + " (no heartbeat file)");
        continue;
      }
      j = nlohmann::json::parse(in);
    } catch (const std::exception&) {
      continue;  // being rewritten this instant
    }
    const double age = now - j.value("wall", 0.0);
    const std::string who = "rank " + std::to_string(r) + " on " + j.value("host", std::string("?")) + " (pid " +
                            std::to_string(j.value("pid", 0)) + ")";
    if (age > 2.5)  // beats come every second
      stopped.push_back(who + ": no heartbeat for " + std::to_string(int(age)) + " s, last at step " +
                        std::to_string(j.value("step", int64_t(0))) + " in " + j.value("in", std::string("?")));
    else
      waiting.push_back(who + " at step " + std::to_string(j.value("step", int64_t(0))) + " in " +
                        j.value("in", std::string("?")) + " for " + std::to_string(int(j.value("quiet_s", 0.0))) + " s");
  }
  if (!stopped.empty()) {
    msg << " Stopped responding: ";
    for (size_t i = 0; i < stopped.size(); i++) msg << (i ? "; " : "") << stopped[i];
    msg << ".";
  } else if (!waiting.empty()) {
    msg << " Every other rank is alive: ";
    for (size_t i = 0; i < waiting.size(); i++) msg << (i ? "; " : "") << waiting[i];
    msg << " (a peer unreachable over the network?).";
  }
  msg << " Ending the job; resume from the last checkpoint.\n";
  const std::string text = msg.str();
  ssize_t w = ::write(STDERR_FILENO, text.data(), text.size());
  (void)w;
  ::_exit(75);
}

}  // namespace meshlm
