// The watchdog: a job whose rank stopped (SIGSTOP, a hung node, a dead link) ends with a
// message naming that rank instead of spinning in a collective until an outer timeout.
//
// A rank blocked in a collective cannot tell which peer is missing, and MPI runs FUNNELED (no
// MPI call from a second thread), so the ranks talk on a side channel that needs no MPI:
// each rank's watchdog thread writes a heartbeat file <out>/.ranks/rank<N>.json once a second
// (host, pid, step, phase, seconds since its last progress). The trainer marks progress and
// names its phase as it goes. When this rank's phase has made no progress for longer than its
// allowance, the watchdog reads the others' heartbeats, names the ranks whose heartbeat stopped
// (they are stopped or gone) or, when every rank is alive and waiting, the phases they wait in
// (a network fault between them), and ends the process with status 75 without any MPI call;
// mpirun then ends the rest. The run directory must be shared by the ranks (as it is for
// checkpoints); without it the message names only this rank's phase.
//
// Allowances: `seconds` (the watchdog key) or 20 median step times, whichever is longer; the
// first step, an eval and a save get four times that (JIT compilation, long passes).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace meshlm {

class Watchdog {
 public:
  // seconds == 0: off (no thread, no files).
  Watchdog(double seconds, const std::string& run_dir, int rank, int world_size);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  enum class Phase { setup, first_step, step, eval, save };
  // A new phase begins now (progress), e.g. "gradient reduction" within a step; the name must
  // outlive the phase (a literal).
  void enter(Phase phase, const char* what, int64_t step);
  // A step finished in `seconds` (scales the allowance).
  void step_done(double seconds);
  double allowance(Phase phase) const;  // seconds

 private:
  void run();
  void beat(double quiet_s);
  [[noreturn]] void expire(double quiet_s);

  const double seconds_;
  const std::string dir_;
  const int rank_, size_;
  const std::string host_;
  std::atomic<int64_t> last_progress_ns_{0};
  std::atomic<int> phase_{0};
  std::atomic<const char*> what_{"setup"};
  std::atomic<int64_t> step_{0};
  std::atomic<double> step_allowance_{0};
  std::vector<double> step_times_;  // trainer thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace meshlm
