#include "core/threads.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace meshlm {

namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof set, &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
}

}  // namespace

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

int local_ranks() {
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  return local ? std::max(1, std::atoi(local)) : 1;
}

ThreadGovernor::ThreadGovernor(int fixed, int share) : cpus_(affinity_cpus()) {
  if (fixed > 0) {
    threads_ = fixed;
  } else if (share > 1) {
    threads_ = std::max(1, cpus_ / share);
  } else {
    adaptive_ = true;
    threads_ = cpus_;
    last_ = sample();
  }
  omp_set_num_threads(threads_);
}

// The machine's busy jiffies (all CPUs: user, nice, system, irq, softirq, steal) and this
// process's CPU seconds, now.
ThreadGovernor::Sample ThreadGovernor::sample() {
  Sample s;
  s.at = std::chrono::steady_clock::now();
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[8] = {0};
  if (in >> cpu && cpu == "cpu")
    for (double& x : v) in >> x;
  s.busy_jiffies = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // idle (3) and iowait (4) left out
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  s.own_seconds = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  return s;
}

int ThreadGovernor::update(bool first) {
  if (!adaptive_) return threads_;
  const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_.at).count();
  if (since < (first ? 0.01 : 0.5)) return threads_;  // cheap between measurements: one clock read
  const Sample now = sample();
  const double wall = std::chrono::duration<double>(now.at - last_.at).count();
  const double hz = double(::sysconf(_SC_CLK_TCK));
  const double others = ((now.busy_jiffies - last_.busy_jiffies) / hz - (now.own_seconds - last_.own_seconds)) / wall;
  last_ = now;
  const int target = std::clamp(int(std::lround(double(cpus_) - std::max(0.0, others))), 1, cpus_);
  // Two measurements in a row before a change (a burst of other work is not a new machine).
  if (first) pending_ = target;
  if (target == threads_) {
    pending_ = 0;
  } else if (target == pending_) {
    threads_ = target;
    omp_set_num_threads(threads_);
    pending_ = 0;
  } else {
    pending_ = target;
  }
  return threads_;
}

ThreadGovernor make_thread_governor(int64_t threads_flag) {
  int fixed = int(threads_flag);
  if (fixed <= 0)
    if (const char* env = std::getenv("OMP_NUM_THREADS"); env && std::atoi(env) > 0) fixed = std::atoi(env);
  ThreadGovernor g(fixed, local_ranks());
  if (g.adaptive()) {  // a first measurement before the first step
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    g.update(true);
  }
  return g;
}

}  // namespace meshlm
