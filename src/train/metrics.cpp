#include "train/metrics.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/threads.h"

namespace meshlm {

double measure_peak_gflops(Backend& be, DType dt) {
  // 2048^3 keeps a CPU busy for a second; a GPU finishes it in microseconds, so it gets 8192^3.
  const int64_t n = be.host_addressable() ? 2048 : 8192;
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
  be.synchronize();
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    be.gemm(dt, false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, c.data(), n);
    be.synchronize();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

double machine_peak_gflops(Backend& be, DType dt, const std::string& cache, std::string& how) {
  namespace fs = std::filesystem;
  if (dt != DType::fp32 && !be.supports(Op::gemm, dt)) dt = DType::fp32;
  const std::string what = std::string(dtype_name(dt)) + (be.host_addressable() ? " 2048^3" : " 8192^3") + " GEMM";
  const std::string key = cpu_model_name() + " | " + be.describe() + " | " + dtype_name(dt) + " | " +
                          std::to_string(omp_get_max_threads()) + " threads";
  nlohmann::json peaks = nlohmann::json::object();
  if (!cache.empty()) {
    std::ifstream in(cache);
    peaks = in ? nlohmann::json::parse(in, nullptr, false) : peaks;
    if (!peaks.is_object()) peaks = nlohmann::json::object();  // damaged: measured over
    const auto it = peaks.find(key);
    if (it != peaks.end() && it->is_object() && it->value("gflops", 0.0) > 0) {
      how = what + " measured " + it->value("measured", std::string("earlier")) + ", cached in " + cache;
      return it->at("gflops").get<double>();
    }
  }
  const double g = measure_peak_gflops(be, dt);
  how = "measured, " + what;
  if (cache.empty()) return g;
  char day[16];
  const std::time_t now = std::time(nullptr);
  std::strftime(day, sizeof day, "%Y-%m-%d", std::gmtime(&now));
  peaks[key] = {{"gflops", g}, {"measured", day}};
  try {
    fs::create_directories(fs::path(cache).parent_path());
    write_file_atomic(cache, peaks.dump(2) + "\n");
  } catch (const std::exception&) {  // a read-only home: measured again next time
  }
  return g;
}

std::string peak_cache_path(const std::string& setting) {
  namespace fs = std::filesystem;
  if (setting == "off") return "";
  if (setting != "auto") return setting;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return (fs::path(xdg) / "meshlm" / "peak_gflops.json").string();
  const char* home = std::getenv("HOME");
  return home && *home ? (fs::path(home) / ".cache" / "meshlm" / "peak_gflops.json").string() : "";
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
