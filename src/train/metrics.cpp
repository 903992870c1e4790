#include "train/metrics.h"

#include <unistd.h>

#include <chrono>
#include <vector>

#include "core/error.h"

namespace meshlm {

double measure_peak_gflops(Backend& be, DType dt) {
  const int64_t n = 2048;
  if (dt != DType::fp32 && !be.supports(Op::gemm, dt)) dt = DType::fp32;  // e.g. fp16 here
  const std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f);
  Tensor a32({n * n}, DType::fp32, be), b32({n * n}, DType::fp32, be), c({n * n}, DType::fp32, be);
  be.upload(a32.data(), a.data(), a32.nbytes());
  be.upload(b32.data(), b.data(), b32.nbytes());
  Tensor a16({n * n}, dt, be), b16({n * n}, dt, be);  // the operands in dt
  be.convert(dt, a16.data(), DType::fp32, a32.data(), n * n);
  be.convert(dt, b16.data(), DType::fp32, b32.data(), n * n);
  const void *A = a16.data(), *B = b16.data();
  // One untimed call creates (JIT-compiles) the primitive; then the best of 5.
  be.gemm(dt, false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, c.data(), n);
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    be.gemm(dt, false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, c.data(), n);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

bool stdout_is_terminal() { return ::isatty(1) == 1; }

std::string format_duration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

std::string progress_bar(int64_t done, int64_t total, double eta) {
  const int width = 24;
  const double frac = total > 0 ? double(done) / double(total) : 1.0;
  std::string bar(width, '.');
  for (int i = 0; i < int(frac * width + 1e-9); i++) bar[i] = '#';
  char buf[128];
  std::snprintf(buf, sizeof buf, "[%s] %3.0f%%  step %lld/%lld  eta %s", bar.c_str(), frac * 100,
                (long long)done, (long long)total, format_duration(eta).c_str());
  return buf;
}

}  // namespace meshlm
