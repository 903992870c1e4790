#include "train/trainer.h"

#include <omp.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>

#include "backend/profiling.h"
#include "core/error.h"
#include "data/loader.h"
#include "model/gpt.h"
#include "optim/adamw.h"
#include "precision/fp16_pure.h"
#include "precision/numerics.h"
#include "precision/policy.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/metrics.h"

namespace meshlm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Set by SIGINT/SIGTERM. A signal handler can only reach process state; this flag is the one
// piece of it, read once per step by the loop that installed the handler.
volatile std::sig_atomic_t g_stop_requested = 0;
void on_stop_signal(int) { g_stop_requested = 1; }

struct SignalGuard {
  void (*old_int)(int), (*old_term)(int);
  SignalGuard() {
    g_stop_requested = 0;
    old_int = std::signal(SIGINT, on_stop_signal);
    old_term = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalGuard() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
};

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

}  // namespace

TrainConfig checkpoint_config(const std::string& dir) {
  nlohmann::json trainer = verify_checkpoint(dir);
  TrainConfig cfg;
  MESHLM_CHECK(trainer.contains("config"), dir + "/trainer.json: no config");
  apply_json(cfg, trainer["config"], dir + "/trainer.json");
  return cfg;
}

namespace {

bool is_checkpoint_dir(const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  return e.is_directory() && name.rfind("step_", 0) == 0;
}

// A fresh run must not silently mix with (or overwrite) an earlier run in the same directory.
void prepare_fresh_run_dir(const std::string& dir, bool overwrite) {
  if (!fs::exists(dir)) return;
  const fs::path metrics = fs::path(dir) / "metrics.jsonl";
  bool has_run = fs::exists(metrics);
  for (const auto& e : fs::directory_iterator(dir)) has_run = has_run || is_checkpoint_dir(e);
  if (!has_run) return;
  MESHLM_CHECK(overwrite, dir + ": already holds a run (metrics.jsonl or step_* checkpoints); "
                              "continue it with --resume " + dir + "/step_NNNNNN, pick another --out, "
                              "or pass --overwrite");
  fs::remove(metrics);
  for (const auto& e : fs::directory_iterator(dir))
    if (is_checkpoint_dir(e)) fs::remove_all(e.path());
}

// Resuming into a run directory: drop metrics lines past the resumed step (an abandoned tail).
void truncate_metrics_after(const fs::path& metrics, int64_t step) {
  if (!fs::exists(metrics)) return;
  std::ifstream in(metrics);
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t(0)) > step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line from a crash
    }
    kept += line + "\n";
  }
  in.close();
  std::ofstream(metrics, std::ios::trunc) << kept;
}

// The tokenizer of this run: the resumed checkpoint's own file, the config's, or the data
// manifest's; "" when none is known (shards from elsewhere without a manifest).
std::string resolve_tokenizer(const TrainConfig& cfg, const std::string& resume_dir) {
  if (!resume_dir.empty() && fs::exists(fs::path(resume_dir) / "tokenizer.json"))
    return (fs::path(resume_dir) / "tokenizer.json").string();
  if (!cfg.tokenizer.empty()) return cfg.tokenizer;
  const fs::path manifest = fs::path(cfg.data) / "manifest.json";
  if (fs::exists(manifest)) {
    std::string spec;
    try {
      spec = nlohmann::json::parse(std::ifstream(manifest)).value("tokenizer", "");
    } catch (const nlohmann::json::exception&) {
      throw Error(manifest.string() + ": not valid JSON");
    }
    // A file the manifest names is relative to the data directory (prepare copies it there).
    const fs::path beside = fs::path(cfg.data) / spec;
    if (!spec.empty() && spec != "bytes" && spec != "gpt2" && fs::is_regular_file(beside)) return beside.string();
    return spec;
  }
  return "";
}

// What a checkpoint records of the precision mode: the mode, the loss scaler, fp8's scales.
nlohmann::json precision_state(const Precision& prec, const Gpt& model, const LossScaler& scaler) {
  nlohmann::json j = {{"mode", prec.mode}};
  if (prec.dynamic_scaling) j["loss_scaler"] = scaler.to_json();
  if (model.fp8()) j["fp8"] = model.fp8_state();
  return j;
}

// Restores that state when the mode has it; a checkpoint of another mode starts this mode
// fresh (weights are stored as fp32 masters, so any mode can start from any checkpoint).
void restore_precision_state(const nlohmann::json& trainer, const Precision& prec, Gpt& model,
                             LossScaler& scaler, std::ostream& out) {
  const nlohmann::json p = trainer.value("precision", nlohmann::json::object());
  const std::string saved = p.value("mode", std::string("fp32"));
  if (saved != prec.mode)
    out << "precision: the checkpoint was trained in " << saved << ", continuing in " << prec.mode << "\n";
  if (prec.dynamic_scaling && p.contains("loss_scaler")) scaler.from_json(p["loss_scaler"]);
  if (model.fp8() && p.contains("fp8")) model.set_fp8_state(p["fp8"]);
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const std::string& resume_dir, std::ostream& out,
                  bool overwrite) {
  cfg.validate();
  MESHLM_CHECK(!cfg.data.empty(), "--data: no data directory given (run `meshlm prepare` first)");
  if (cfg.threads > 0) omp_set_num_threads(int(cfg.threads));
  std::unique_ptr<Backend> backend = make_backend(cfg.backend);
  ProfilingBackend* profiler = nullptr;  // --profile: time every kernel call
  if (cfg.profile == 1) {
    auto p = make_profiling_backend(std::move(backend));
    profiler = p.get();
    backend = std::move(p);
  }
  const ModelConfig mcfg = cfg.model();
  const int64_t T = cfg.seq_len, mb = cfg.micro_batch(), accum = cfg.accumulation_steps();

  const std::string tokenizer_spec = resolve_tokenizer(cfg, resume_dir);
  std::optional<BpeTokenizer> tokenizer;
  if (!tokenizer_spec.empty()) tokenizer.emplace(load_tokenizer(tokenizer_spec));
  const std::string tokenizer_file =
      tokenizer && tokenizer_spec != "bytes" && tokenizer_spec != "gpt2" && fs::is_regular_file(tokenizer_spec)
          ? tokenizer_spec
          : "";
  const DataLoader train_data(cfg.data, "train", T, mcfg.vocab_size, cfg.shuffle == 1, uint64_t(cfg.data_seed));
  std::unique_ptr<DataLoader> val_data;
  if (cfg.eval_batches > 0) val_data = std::make_unique<DataLoader>(cfg.data, "val", T, mcfg.vocab_size);
  const BatchPlan plan{1, 0, accum, mb};  // one rank until data parallelism lands

  const Precision prec(cfg.precision, cfg.stochastic_rounding == 1, cfg.master_weights == 1,
                       cfg.loss_scale, uint64_t(cfg.seed));
  Gpt model(mcfg, *backend, prec.compute);
  if (prec.fp8) model.enable_fp8(cfg.fp8_scaling());
  AdamW opt(model.table(), DType::fp32, cfg.adamw());
  LossScaler scaler(cfg.loss_scaler());
  TrainerState st;
  st.rng = {uint64_t(cfg.seed), 0};
  if (!resume_dir.empty()) {
    nlohmann::json trainer = load_checkpoint(resume_dir, model, &opt);
    st.step = trainer.at("step").get<int64_t>();
    st.loader.sequences = trainer.at("loader").at("sequences").get<int64_t>();
    st.rng = {trainer["rng"]["seed"].get<uint64_t>(), trainer["rng"]["counter"].get<uint64_t>()};
    restore_precision_state(trainer, prec, model, scaler, out);
    out << "resumed from " << resume_dir << " at step " << st.step << "\n";
  } else {
    model.init(uint64_t(cfg.seed));
  }
  // A checkpoint (or init) of another mode starts this one: make the state this mode's.
  if (prec.fp16_pure) {
    round_to_fp16(model.params().as<float>(), model.params().numel());
    round_to_fp16(opt.m().as<float>(), opt.m().numel());
    round_to_fp16(opt.v().as<float>(), opt.v().numel());
  }
  if (!prec.master_weights) {
    model.update_compute_weights(prec.rounding(st.step));
    model.master_from_compute_weights();
  }
  model.update_compute_weights(prec.rounding(st.step));

  if (resume_dir.empty())
    prepare_fresh_run_dir(cfg.out, overwrite);
  else
    truncate_metrics_after(fs::path(cfg.out) / "metrics.jsonl", st.step);
  fs::create_directories(cfg.out);
  MetricsLog metrics((fs::path(cfg.out) / "metrics.jsonl").string(), !resume_dir.empty());
  const DType peak_dtype = backend->supports(Op::gemm, prec.compute) ? prec.compute : DType::fp32;
  const double peak = cfg.peak_gflops > 0 ? cfg.peak_gflops : measure_peak_gflops(*backend, peak_dtype);
  const double flops_per_step = mcfg.flops_per_token(T) * double(cfg.batch_size * T);
  out << "model   " << mcfg.describe() << "\n"
      << "batch   " << cfg.batch_size << " x " << T << " tokens (" << accum << " micro-batch"
      << (accum > 1 ? "es" : "") << " of " << mb << "), " << cfg.steps << " steps\n"
      << "compute " << backend->name() << " backend, " << omp_get_max_threads() << " threads, peak "
      << fmt("%.0f", peak) << " GFLOP/s ("
      << (cfg.peak_gflops > 0 ? std::string("given")
                              : std::string("measured, ") + dtype_name(peak_dtype) + " 2048^3 GEMM")
      << (prec.fp8 ? "; fp8 is simulated: its speed is bf16 arithmetic plus quantization" : "") << ")\n"
      << "numerics " << prec.describe() << "\n"
      << "data    " << cfg.data << " ("
      << (tokenizer ? "tokenizer " + tokenizer_spec + ", " + std::to_string(tokenizer->vocab_size()) + " tokens"
                    : std::string("tokenizer unknown: no manifest.json and no --tokenizer; no per-byte loss"))
      << ")\n"
      << "run     " << cfg.out << "\n";
  out.flush();

  const LrSchedule sched = cfg.schedule();
  TrainConfig saved_cfg = cfg;
  saved_cfg.tokenizer = tokenizer_file.empty() ? tokenizer_spec : "tokenizer.json";  // in the checkpoint
  const nlohmann::json cfg_json = saved_cfg.to_json();
  const bool tty = stdout_is_terminal();  // then a live progress line follows the log
  SignalGuard signals;
  TrainResult res;
  std::vector<int32_t> x, y;
  double tok_sum = 0, time_sum = 0;
  const auto run_start = Clock::now();
  const int64_t first_step = st.step;

  auto save = [&](const char* why) {
    const std::string dir = (fs::path(cfg.out) / checkpoint_dir_name(st.step)).string();
    st.precision = precision_state(prec, model, scaler);
    save_checkpoint(dir, model, &opt, st, cfg_json, tokenizer_file);
    res.checkpoint = dir;
    out << "saved   " << dir << " (" << why << ")\n";
  };
  double profiled_secs = 0;  // the timed steps' wall time (all but this run's first)
  int64_t profiled_steps = 0;
  auto run_eval = [&]() {
    if (profiler) profiler->set_enabled(false);
    const EvalResult v = evaluate(model, *val_data, cfg.eval_batches, mb, T, tokenizer ? &*tokenizer : nullptr);
    res.val_loss = v.loss;
    res.val_loss_per_byte = v.loss_per_byte;
    nlohmann::ordered_json line = {{"step", st.step}, {"val_loss", v.loss}};
    if (v.loss_per_byte >= 0) line["val_loss_per_byte"] = v.loss_per_byte;
    metrics.write(line);
    if (profiler) profiler->set_enabled(true);
    out << "eval    step " << st.step << " | val_loss " << fmt("%.4f", v.loss) << " nats/token";
    if (v.loss_per_byte >= 0) out << ", " << fmt("%.4f", v.loss_per_byte) << " nats/byte";
    out << "\n";
  };

  std::unique_ptr<NumericsReport> numerics;
  if (cfg.numerics_report > 0)
    numerics = std::make_unique<NumericsReport>((fs::path(cfg.out) / "numerics.jsonl").string(),
                                                !resume_dir.empty(), st.step);
  while (st.step < cfg.steps) {
    const auto t0 = Clock::now();
    model.zero_grad();
    // The loss is multiplied by the loss scale before backward (fp16), so the gradients hold
    // scale * gradient until the optimizer divides it back out.
    const double scale = prec.dynamic_scaling ? scaler.scale() : prec.static_scale;
    double loss = 0;
    for (int64_t k = 0; k < accum; k++) {
      train_data.read(plan.first(st.loader.sequences, k), mb, x, y);
      loss += model.forward(x.data(), y.data(), mb, T, float(scale / double(accum))) / double(accum);
      model.backward();
    }
    if (cfg.inject_inf_at_step == st.step + 1) model.grads().as<float>()[0] = INFINITY;
    if (prec.fp16_pure) round_to_fp16(model.grads().as<float>(), model.grads().numel());
    // One flag for the whole gradient (a sum of squares is inf/NaN iff any element is); with
    // data parallelism it is the one number every rank reduces and agrees on.
    const double sumsq = backend->sum_squares(DType::fp32, model.grads().data(), model.grads().numel());
    const bool overflow = !std::isfinite(sumsq);
    const double norm = std::sqrt(sumsq) / scale;
    const bool write_numerics = numerics && (st.step + 1) % cfg.numerics_report == 0;
    if (write_numerics) numerics->write(st.step + 1, model, scale);
    bool skipped = false;
    if (prec.dynamic_scaling) {
      skipped = !scaler.update(overflow);  // throws below the minimum scale
    }
    const double lr = sched.at(st.step);
    if (!skipped) {
      const float clip = clip_factor(norm, cfg.grad_clip);
      opt.step(*backend, model.params(), model.grads(), float(lr), float(clip / scale),
               st.step + 1 - scaler.skipped_steps(), prec.fp16_pure);
      if (!prec.master_weights) {
        model.update_compute_weights(prec.rounding(st.step + 1));
        model.master_from_compute_weights();
      } else {
        model.update_compute_weights(prec.rounding(st.step + 1));
      }
    }
    if (model.fp8()) model.end_fp8_step();
    st.step++;
    st.loader.sequences += plan.global_batch();
    st.epoch = st.loader.sequences / train_data.windows_per_epoch();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tps = double(cfg.batch_size * T) / secs;
    const double mfu = flops_per_step / secs / (peak * 1e9);
    tok_sum += double(cfg.batch_size * T);
    time_sum += secs;
    if (profiler && st.step == first_step + 1) {
      profiler->reset();  // the first step JIT-compiles GEMMs and touches fresh memory
    } else if (profiler) {
      profiled_secs += secs;
      profiled_steps++;
    }
    res.last_loss = loss;
    MESHLM_CHECK(std::isfinite(loss), "step " + std::to_string(st.step) + ": the loss is not finite (" +
                                          (prec.fp16_pure ? "the pure-fp16 recipe diverged"
                                                          : "lr too high?") + "); stopping");
    nlohmann::ordered_json line = {{"step", st.step}, {"loss", loss}, {"lr", lr}};
    line["grad_norm"] = overflow ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(norm);
    line["ms_per_step"] = secs * 1e3;
    line["tokens_per_s"] = tps;
    line["mfu"] = mfu;
    if (prec.dynamic_scaling || prec.static_scale != 1.0) line["loss_scale"] = scale;
    if (skipped) line["skipped"] = true;
    if (prec.fp8) line["fp8_simulated"] = true;  // the speed figures are not fp8 hardware's
    metrics.write(line);
    if (skipped) {
      res.skipped_steps++;
      out << "overflow at step " << st.step << ": inf/NaN in the gradients, step skipped, loss scale "
          << fmt("%g", scale) << " -> " << fmt("%g", scaler.scale()) << "\n";
    }
    if (tty) out << "\r\033[K";  // erase the progress line
    out << "step " << st.step << "/" << cfg.steps << " | loss " << fmt("%.4f", loss) << " | lr "
        << fmt("%.2e", lr) << " | norm " << fmt("%.3f", norm)
        << (prec.dynamic_scaling ? " | scale " + fmt("%g", scale) : std::string()) << " | " << fmt("%.0f", secs * 1e3)
        << " ms | " << fmt("%.0f", tps) << " tok/s | MFU " << fmt("%.1f", mfu * 100) << "%"
        << (prec.fp8 ? " (fp8 simulated)" : "") << "\n";
    out.flush();
    const bool last = st.step == cfg.steps;
    if (val_data && ((cfg.eval_every > 0 && st.step % cfg.eval_every == 0) || last)) run_eval();
    if (g_stop_requested) {
      out << "interrupted at step " << st.step << "; saving a checkpoint\n";
      save("interrupted");
      res.interrupted = true;
      break;
    }
    if (last)
      save("end of run");
    else if (cfg.save_every > 0 && st.step % cfg.save_every == 0)
      save("save_every");
    if (tty && !last) {  // the live progress line, erased before the next line is printed
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta = elapsed / double(st.step - first_step) * double(cfg.steps - st.step);
      out << progress_bar(st.step, cfg.steps, eta) << std::flush;
    }
  }
  if (profiler && profiled_steps > 0) {
    out << "profile (" << profiled_steps << " steps after the first; per step)\n";
    profiler->print(out, profiled_secs, profiled_steps);
  }
  res.steps = st.step;
  res.fp8_simulated = prec.fp8;
  res.tokens_per_s = time_sum > 0 ? tok_sum / time_sum : 0;
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  res.peak_rss_mib = double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
  return res;
}

}  // namespace meshlm
