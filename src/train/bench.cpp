#include "train/bench.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/shard.h"
#include "train/trainer.h"

namespace meshlm {

namespace fs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  MESHLM_CHECK(!v.empty(), "bench: no timed steps");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A directory of its own under /tmp, removed when this goes out of scope.
struct TempDir {
  fs::path path;
  explicit TempDir(const char* what) {
    std::string tmpl = (fs::temp_directory_path() / (std::string("meshlm_bench_") + what + ".XXXXXX")).string();
    MESHLM_CHECK(::mkdtemp(tmpl.data()) != nullptr, "bench: cannot create a temporary directory in /tmp");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

nlohmann::ordered_json BenchResult::to_json(const TrainConfig& cfg) const {
  nlohmann::ordered_json j = {
      {"tokens_per_s", tokens_per_s}, {"ms_per_step", ms_per_step}, {"ms_min", ms_min}, {"ms_max", ms_max},
      {"mfu", mfu}, {"peak_rss_mib", peak_rss_mib}, {"model_gflops", gflops}, {"peak_gflops", peak_gflops},
      {"peak_source", peak_how},
      {"steps", steps},               {"precision", cfg.precision},
      {"fp8_simulated", fp8_simulated},
      {"quantization_simulated", quantization_simulated},
      {"fp8_gemm", cfg.precision == "fp8" ? (fp8_real_gemms ? "real" : "simulated") : "none"},
      {"model", {{"n_layer", cfg.n_layer}, {"n_head", cfg.n_head}, {"n_embd", cfg.n_embd},
                 {"vocab_size", cfg.vocab_size}, {"seq_len", cfg.seq_len}, {"batch_size", cfg.batch_size},
                 {"parameters", cfg.model().num_parameters()}}},
      {"layout", {{"dp", cfg.dp}, {"tp", cfg.tp}, {"pp", cfg.pp}, {"zero", cfg.zero},
                  {"sequence_parallel", cfg.sequence_parallel}, {"pp_schedule", cfg.pp_schedule},
                  {"pp_virtual", cfg.virtual_stages()},
                  {"micro_batches", cfg.accumulation_steps()}}},
      {"recompute", cfg.recompute},
      {"activation_mib", activation_mib},
      {"saved_activation_mib_per_micro_batch", saved_activation_mib},
      {"held_mib", held_mib},
      {"threads_per_rank", omp_get_max_threads()}};
  if (!kernel_ms.empty()) j["breakdown_ms_per_step"] = kernel_ms;
  if (!pp_idle.empty()) {
    j["pp_idle_per_stage"] = pp_idle;
    j["pp_idle_predicted"] = pp_idle_predicted;
  }
  return j;
}

BenchResult bench(TrainConfig cfg, const BenchOptions& opt, std::ostream& log, Mesh* mesh) {
  MESHLM_CHECK(opt.warmup >= 1, "bench: --warmup must be >= 1 (the first step compiles GEMMs)");
  MESHLM_CHECK(opt.steps >= 1, "bench: --timed-steps must be >= 1");
  cfg.steps = opt.warmup + opt.steps;
  cfg.eval_batches = 0;
  cfg.checkpoints = 0;
  cfg.numerics_report = 0;
  cfg.plots = cfg.tensorboard = cfg.sample_every = 0;
  cfg.profile = opt.breakdown ? 1 : 0;
  cfg.validate();
  std::unique_ptr<TempDir> data;
  if (cfg.data.empty()) {  // random tokens: enough for every step, the same on every rank
    data = std::make_unique<TempDir>("data");
    const int64_t n = cfg.steps * cfg.batch_size * cfg.seq_len + cfg.seq_len + 1;
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) tokens[size_t(i)] = int32_t(random_u32(1234, 7, uint64_t(i)) % uint64_t(cfg.vocab_size));
    write_shard((data->path / "bench_train_000000.bin").string(), tokens, cfg.vocab_size);
    cfg.data = data->path.string();
    cfg.tokenizer = "";
  }
  TempDir out("run");
  cfg.out = (out.path / "run").string();
  const TrainResult r = train(cfg, "", log, true, mesh);
  BenchResult b;
  b.peak_rss_mib = r.peak_rss_mib;
  b.peak_gflops = r.peak_gflops;
  b.peak_how = r.peak_how;
  b.kernel_ms = r.kernel_ms;
  b.activation_mib = r.activation_mib;
  b.saved_activation_mib = r.saved_activation_mib;
  b.held_mib = r.held_mib;
  b.pp_idle = r.pp_idle;
  b.pp_idle_predicted = r.pp_idle_predicted;
  b.fp8_simulated = r.fp8_simulated;
  b.quantization_simulated = r.quantization_simulated;
  b.fp8_real_gemms = r.fp8_real_gemms;
  if (mesh && mesh->rank() != 0) return b;  // only rank 0 wrote metrics
  std::ifstream in(fs::path(cfg.out) / "metrics.jsonl");
  std::vector<double> ms, tps, mfu;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("loss") || j["step"].get<int64_t>() <= opt.warmup) continue;
    ms.push_back(j["ms_per_step"].get<double>());
    tps.push_back(j["tokens_per_s"].get<double>());
    mfu.push_back(j["mfu"].get<double>());
  }
  b.steps = int64_t(ms.size());
  b.ms_per_step = median(ms);
  b.ms_min = *std::min_element(ms.begin(), ms.end());
  b.ms_max = *std::max_element(ms.begin(), ms.end());
  b.tokens_per_s = median(tps);
  b.mfu = median(mfu);
  b.gflops = cfg.model().flops_per_token(cfg.seq_len) * b.tokens_per_s / 1e9;
  return b;
}

}  // namespace meshlm
