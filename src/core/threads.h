// How many OpenMP threads to compute with, on a machine that may be shared. A thread count
// above the CPUs this process actually gets makes every parallel region wait for a
// descheduled thread (an eval of a small model ran 3-4x slower with 2 threads than with 1
// while two other programs spun on the 2 cores). The governor measures, between steps, how
// many CPUs other processes keep busy (from /proc/stat, less this process's own CPU time) and
// uses the rest: with the machine to itself, every CPU of its affinity mask; under load, fewer.
// Results do not depend on the thread count (the kernels' reduction orders are fixed), so the
// count may change at any step.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace meshlm {

class ThreadGovernor {
 public:
  // fixed > 0: always that many (--threads, OMP_NUM_THREADS). share > 1: this process shares
  // its node with that many ranks: CPUs / share, fixed.
  ThreadGovernor(int fixed, int share);
  // Re-measures (at most every half second; `first`: now, and adopt it at once) and sets
  // omp_set_num_threads; returns the count.
  int update(bool first = false);
  int threads() const { return threads_; }
  bool adaptive() const { return adaptive_; }
  int cpus() const { return cpus_; }

 private:
  struct Sample {
    double busy_jiffies = 0, own_seconds = 0;
    std::chrono::steady_clock::time_point at;
  };
  static Sample sample();
  int cpus_ = 1, threads_ = 1, pending_ = 0;
  bool adaptive_ = false;
  Sample last_;
};

// /proc/cpuinfo's first "model name" ("AMD EPYC 9R14 96-Core Processor"), "unknown CPU" without.
std::string cpu_model_name();
// The ranks of this job on this node (OpenMPI's OMPI_COMM_WORLD_LOCAL_SIZE; 1 without mpirun).
int local_ranks();
// The governor a command starts with: --threads, else OMP_NUM_THREADS, else adaptive (or CPUs /
// local ranks under mpirun). Measures for 0.1 s before returning when adaptive.
ThreadGovernor make_thread_governor(int64_t threads_flag);

}  // namespace meshlm
