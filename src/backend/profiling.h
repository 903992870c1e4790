// A Backend that times every kernel call of another one (wall clock around each call; every
// kernel is one or more OpenMP regions that finish before it returns) and sums the time per
// kernel and direction: "where does a training step's time go". Numerics are the inner
// backend's, untouched.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "backend/backend.h"

namespace meshlm {

class ProfilingBackend;

struct KernelTime {
  double seconds = 0;
  int64_t calls = 0;
};

std::unique_ptr<ProfilingBackend> make_profiling_backend(std::unique_ptr<Backend> inner);

class ProfilingBackend : public Backend {
 public:
  // Per "op.direction" (e.g. "matmul.forward"), since the last reset.
  virtual const std::map<std::string, KernelTime>& times() const = 0;
  virtual void reset() = 0;
  virtual void set_enabled(bool on) = 0;  // off: calls pass through untimed
  // A table sorted by time, with each kernel's share of `step_seconds` (the rest: outside the
  // kernels - data loading, the optimizer's bookkeeping, conversions in the model). `extra`
  // rows (seconds over all steps, e.g. communication) are listed too and not counted as rest.
  void print(std::ostream& out, double step_seconds, int64_t steps,
             const std::map<std::string, double>& extra = {}) const;
};

}  // namespace meshlm
