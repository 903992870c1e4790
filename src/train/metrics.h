// Metrics: one JSON object per line in <run>/metrics.jsonl, a human line per step on stdout,
// and (on a terminal) a live progress line under them. Also the MFU peak measurement.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/files.h"

namespace meshlm {

// One write(2) per line (core/files.h): a kill leaves at most a torn last line, a full disk
// is an error naming the file, never a silently shorter log.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool append) : file_(path, append) {}
  void write(const nlohmann::ordered_json& line) { file_.write(line.dump() + "\n"); }  // keys in the order given
  void sync() { file_.sync(); }

 private:
  AppendFile file_;
};

// Achieved GFLOP/s of a 2048^3 GEMM with `dt` operands on `be` (best of 5 after a warm-up
// call): the MFU denominator. fp32 for a dtype the backend's gemm does not take (fp16 here,
// whose products run in fp32). About half a second on 2 cores.
double measure_peak_gflops(Backend& be, DType dt = DType::fp32);
// The MFU denominator of this machine: the entry of `cache` (a JSON file of peaks keyed by CPU
// model, backend, dtype and thread count, so MFU figures of different runs share one
// denominator) or, when it has none, measure_peak_gflops, added to the file. A cache that cannot
// be read is measured over, one that cannot be written is left alone; `cache` empty: measured
// every time. `how`: "measured, bf16 2048^3 GEMM" or "bf16 2048^3 GEMM measured 2026-12-03,
// cached in PATH".
double machine_peak_gflops(Backend& be, DType dt, const std::string& cache, std::string& how);
// The file of the peak_cache setting: "auto" is $XDG_CACHE_HOME/meshlm/peak_gflops.json, else
// $HOME/.cache/meshlm/peak_gflops.json ("" with neither); "off" is "" (no cache); else the path.
std::string peak_cache_path(const std::string& setting);
bool stdout_is_terminal();
std::string format_duration(double seconds);  // "1m23s"
// "[#######.............] 35%  step 70/200  eta 1m10s" (fits 80 columns)
std::string progress_bar(int64_t done, int64_t total, double eta_seconds);

}  // namespace meshlm
