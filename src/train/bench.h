// `meshlm bench`: warm-up plus N timed training steps of a model config, precision and layout,
// through the real trainer (so what is timed is what trains), on random tokens unless a data
// directory is given, writing nothing but a temporary run directory that is removed after.
// Reports medians over the timed steps (and the fastest and slowest step): ms/step, tokens/s,
// achieved model GFLOP/s (6N + 12LCT FLOPs per token) and MFU against a peak measured with a
// 2048^3 GEMM in the compute dtype once per machine (train/metrics.h) or --peak-gflops, the
// peak RSS, and optionally the per-kernel breakdown of a step.
#pragma once
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallel/mesh.h"
#include "train/config.h"

namespace meshlm {

struct BenchOptions {
  int64_t warmup = 2;   // untimed steps first (JIT-compiled GEMMs, first touches of memory)
  int64_t steps = 10;   // timed steps
  bool breakdown = false;
};

struct BenchResult {
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0, mfu = 0, peak_gflops = 0, peak_rss_mib = 0;
  double ms_min = 0, ms_max = 0;  // the spread of the timed steps
  std::string peak_how;           // the MFU denominator's source (TrainResult::peak_how)
  int64_t steps = 0;
  std::map<std::string, double> kernel_ms;  // with breakdown: ms per step per kernel
  double activation_mib = 0, saved_activation_mib = 0, held_mib = 0;  // rank 0's (TrainResult)
  std::vector<double> pp_idle;  // pipeline: each stage's mean idle fraction
  double pp_idle_predicted = 0;
  bool fp8_simulated = false, quantization_simulated = false, fp8_real_gemms = false;  // TrainResult's
  nlohmann::ordered_json to_json(const TrainConfig& cfg) const;
};

// Every rank of the mesh calls this with the same arguments; rank 0's result is the one to print.
BenchResult bench(TrainConfig cfg, const BenchOptions& opt, std::ostream& log, Mesh* mesh = nullptr);

}  // namespace meshlm
