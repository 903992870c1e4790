#include "core/stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

namespace meshlm {

namespace {

// The process's signal state (see the header: signals are process-wide, so is this).
std::atomic<bool> g_installed{false};
std::atomic<int> g_listeners{0};
std::atomic<int> g_count{0};
std::atomic<int> g_last{0};

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP};

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kStopSignals) sigaddset(&set, s);
  return set;
}

// write(2) only: the process may be in any state when this runs.
void say(const char* text) {
  ssize_t r = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)r;
}

// Ends the process by `sig`'s default action, so that the parent sees the signal.
[[noreturn]] void die_by(int sig) {
  ::signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  ::raise(sig);
  ::_exit(128 + sig);
}

void handle(int sig) {
  if (g_listeners.load() == 0) die_by(sig);  // nobody asked to be told: the default action
  g_last = sig;
  const int n = ++g_count;
  if (n == 2) say("\nmeshlm: second stop signal: cutting the current eval short; a third exits at once\n");
  if (n >= 3) {
    say("\nmeshlm: third stop signal: exiting now without a checkpoint\n");
    die_by(sig);
  }
}

void wait_loop() {
  const sigset_t set = stop_set();
  for (;;) {
    int sig = 0;
    if (::sigwait(&set, &sig) == 0) handle(sig);
  }
}

}  // namespace

void StopSignals::install() {
  if (g_installed.exchange(true)) return;
  const sigset_t set = stop_set();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // SIGXFSZ: a write past RLIMIT_FSIZE then fails with EFBIG, reported as a write error,
  // instead of killing the process mid-file.
  ::signal(SIGXFSZ, SIG_IGN);
  std::thread(wait_loop).detach();
}

bool StopSignals::installed() { return g_installed.load(); }
int StopSignals::count() { return g_listeners.load() > 0 ? g_count.load() : 0; }
int StopSignals::last_signal() { return g_last.load(); }
void StopSignals::deliver(int sig) { handle(sig); }

StopListener::StopListener() {
  if (g_listeners++ == 0) g_count = 0;
}
StopListener::~StopListener() { g_listeners--; }

}  // namespace meshlm
