#include "backend/profiling.h"

#include <algorithm>
#include <chrono>
#include <type_traits>
#include <cstdio>
#include <vector>

namespace meshlm {
namespace {

class Profiler final : public ProfilingBackend {
 public:
  explicit Profiler(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
  const char* name() const override { return in_->name(); }
  bool supports(Op op, DType dt) const override { return in_->supports(op, dt); }
  bool host_addressable() const override { return in_->host_addressable(); }
  const std::map<std::string, KernelTime>& times() const override { return times_; }
  void reset() override { times_.clear(); }
  void set_enabled(bool on) override { enabled_ = on; }

  void* allocate(size_t bytes) override { return in_->allocate(bytes); }
  void deallocate(void* p, size_t bytes) override { in_->deallocate(p, bytes); }
  std::string describe() const override { return in_->describe(); }
  void begin_client_access() override { in_->begin_client_access(); }
  void end_client_access() override { in_->end_client_access(); }

#define MESHLM_OP(R, name, family, key, params, args) \
  R name params override { return timed(key, [&] { return in_->name args; }); }
#include "backend/ops.inc"
#undef MESHLM_OP

 private:
  // The call's result, and its time added under `key` (when enabled).
  template <class F>
  std::invoke_result_t<F> timed(const char* key, F&& f) {
    if (!enabled_) return f();
    struct Stop {  // records on the way out, also for a void f
      Profiler* p;
      const char* key;
      std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
      ~Stop() {
        KernelTime& k = p->times_[key];
        k.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        k.calls++;
      }
    } stop{this, key};
    return f();
  }
  std::unique_ptr<Backend> in_;
  std::map<std::string, KernelTime> times_;
  bool enabled_ = true;
};

}  // namespace

std::unique_ptr<ProfilingBackend> make_profiling_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<Profiler>(std::move(inner));
}

void ProfilingBackend::print(std::ostream& out, double step_seconds, int64_t steps,
                             const std::map<std::string, double>& extra) const {
  std::vector<std::pair<std::string, KernelTime>> rows(times().begin(), times().end());
  for (const auto& [name, secs] : extra) rows.push_back({name, KernelTime{secs, steps}});
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  const double per = steps > 0 ? 1.0 / double(steps) : 1.0;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-20s %12s %8s %10s\n", "kernel", "ms/step", "share", "calls/step");
  out << buf;
  double total = 0;
  for (const auto& [name, t] : rows) {
    total += t.seconds;
    std::snprintf(buf, sizeof buf, "%-20s %12.1f %7.1f%% %10.1f\n", name.c_str(), t.seconds * per * 1e3,
                  100 * t.seconds / step_seconds, double(t.calls) * per);
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "%-20s %12.1f %7.1f%%\n", "(outside kernels)",
                (step_seconds - total) * per * 1e3, 100 * (step_seconds - total) / step_seconds);
  out << buf;
}

}  // namespace meshlm
