// Stopping a run on a signal without ever running a handler on a compute thread.
//
// oneDNN's generated GEMM code may use the stack pointer as a general register; a signal
// delivered to a thread at that moment has its frame written wherever the stack pointer
// points (the heap), which crashed one stop in five. So no thread that computes ever takes
// one of these signals: StopSignals::install() blocks SIGINT, SIGTERM, SIGUSR1, SIGUSR2 and
// SIGHUP in the calling thread, before any other thread exists (the first thing main()
// does), so that every thread created after it (OpenMP's, MPI's, oneDNN's) inherits the mask,
// and starts one thread that receives them with sigwait() and only counts them.
//
// What a count means is the listener's: while a StopListener exists (a training run), the
// first signal asks for a stop at the next safe point, the second cuts a long eval short, the
// third exits at once (status 128 + signal). With no listener a signal ends the process as its
// default action would. Signals are process state, so this is the one process-wide object.
#pragma once

namespace meshlm {

class StopSignals {
 public:
  // Idempotent. Must run before any thread is created for the guarantee above.
  static void install();
  static bool installed();
  // Signals received while a listener was active (0 when none or not installed).
  static int count();
  static int last_signal();
  // As if `sig` arrived (tests; the same path as a real one).
  static void deliver(int sig);
};

// While one exists, stop signals are counted instead of ending the process.
class StopListener {
 public:
  StopListener();
  ~StopListener();
  StopListener(const StopListener&) = delete;
  StopListener& operator=(const StopListener&) = delete;
};

}  // namespace meshlm
