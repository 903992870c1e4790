// Metrics: one JSON object per line in <run>/metrics.jsonl, a human line per step on stdout,
// and (on a terminal) a live progress line under them. Also the MFU peak measurement.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"

namespace meshlm {

class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  void write(const nlohmann::ordered_json& line);  // keys in the order given; flushed at once

 private:
  FILE* f_ = nullptr;
};

// Achieved GFLOP/s of a 2048^3 GEMM with `dt` operands on `be` (best of 5 after a warm-up
// call): the MFU denominator. fp32 for a dtype the backend's gemm does not take (fp16 here,
// whose products run in fp32). About half a second on 2 cores.
double measure_peak_gflops(Backend& be, DType dt = DType::fp32);
bool stdout_is_terminal();
std::string format_duration(double seconds);  // "1m23s"
// "[#######.............] 35%  step 70/200  eta 1m10s" (fits 80 columns)
std::string progress_bar(int64_t done, int64_t total, double eta_seconds);

}  // namespace meshlm
