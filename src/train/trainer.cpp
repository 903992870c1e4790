// The trainer's parts and its loop. Trainer::Impl owns every part of a run (built in the
// order below, which is also the order of the collectives every rank runs); train() reads top
// to bottom: a step, its record, evaluation, stopping, checkpoints.
#include "train/trainer.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "backend/profiling.h"
#include "core/error.h"
#include "core/stop_signals.h"
#include "core/threads.h"
#include "data/bpe.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "precision/fp8_recipe.h"
#include "precision/quant_recipe.h"
#include "precision/loss_scaler.h"
#include "precision/numerics.h"
#include "precision/policy.h"
#include "train/checkpoint.h"
#include "train/stability.h"
#include "train/checkpointer.h"
#include "train/checkpoint_parts.h"
#include "train/eval.h"
#include "train/grad_sync.h"
#include "train/hf_import.h"
#include "train/metrics.h"
#include "train/pipeline_executor.h"
#include "train/memory_estimate.h"
#include "train/run_log.h"
#include "train/sample.h"
#include "train/watchdog.h"
#include "train/zero_sync.h"

namespace meshlm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "SIGTERM": the stop signal this process received (under mpirun it may have reached only others).
std::string stop_signal_name() {
  const int sig = StopSignals::last_signal();
  const char* abbrev = sig > 0 ? ::sigabbrev_np(sig) : nullptr;
  return abbrev ? std::string("SIG") + abbrev : std::string("a stop signal on another rank");
}

// Resident memory of this process now, in MiB (from /proc/self/statm).
double current_rss_mib() {
  std::ifstream statm("/proc/self/statm");
  double pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * double(::sysconf(_SC_PAGESIZE)) / double(1 << 20);
}

// The tokenizer of this run: the resumed checkpoint's own file, the config's, or the data
// manifest's; "" when none is known (shards from elsewhere without a manifest).
std::string resolve_tokenizer(const TrainConfig& cfg, const std::string& resume_dir) {
  const std::string own = resume_dir.empty() ? "" : tokenizer_file_in(resume_dir);
  if (!own.empty()) return own;
  if (!cfg.tokenizer.empty()) return cfg.tokenizer;
  const fs::path manifest = fs::path(cfg.data) / "manifest.json";
  if (!fs::exists(manifest)) return "";
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

std::unique_ptr<Backend> make_run_backend(const TrainConfig& cfg, ProfilingBackend** profiler) {
  std::unique_ptr<Backend> backend = make_backend(cfg.backend);
  *profiler = nullptr;
  if (cfg.profile != 1) return backend;
  auto p = make_profiling_backend(std::move(backend));  // --profile: time every kernel call
  *profiler = p.get();
  return p;
}

// The testing aid --inject-inf-at-step: an inf planted in dp rank 0's gradient before it is
// reduced. During an overlapped backward it lands just before the first bucket leaves.
class FaultHooks final : public UnitHooks {
 public:
  FaultHooks(UnitHooks& inner, std::function<void()> plant) : inner_(inner), plant_(std::move(plant)) {}
  void before_forward(const UnitRef& u) override { inner_.before_forward(u); }
  void before_backward(const UnitRef& u) override { inner_.before_backward(u); }
  void grads_final_from(int64_t offset) override {
    if (offset == 0) plant_();
    inner_.grads_final_from(offset);
  }

 private:
  UnitHooks& inner_;
  std::function<void()> plant_;
};

// What a checkpoint records of the precision mode: the mode, the loss scaler, fp8's scales,
// the precision plan's promotions.
// the precision plan's promotions, the stability rules' history and a rescaled static loss scale.
nlohmann::json precision_state(const Precision& prec, const Fp8Recipe* fp8, const QuantRecipe* quant,
                               const LossScaler& scaler, const StabilityGuard& guard, double static_scale) {
  nlohmann::json j = {{"mode", prec.mode}, {"stability", guard.state()}};
  if (prec.dynamic_scaling) j["loss_scaler"] = scaler.to_json();
  if (fp8) j["fp8"] = fp8->state();
  if (quant) j["promotions"] = promotions_to_json(quant->promotions());
  if (static_scale != prec.static_scale) j["static_scale"] = static_scale;
  return j;
}

// Restores that state when the mode has it; a checkpoint of another mode starts this mode
// fresh (weights are stored as fp32 masters, so any mode can start from any checkpoint).
void restore_precision_state(const nlohmann::json& trainer, const Precision& prec, Fp8Recipe* fp8,
                             QuantRecipe* quant, LossScaler& scaler, StabilityGuard& guard, double& static_scale,
                             std::ostream& out) {
  const nlohmann::json p = trainer.value("precision", nlohmann::json::object());
  const std::string saved = p.value("mode", std::string("fp32"));
  if (saved != prec.mode)
    out << "precision: the checkpoint was trained in " << saved << ", continuing in " << prec.mode << "\n";
  if (prec.dynamic_scaling && p.contains("loss_scaler")) scaler.from_json(p["loss_scaler"]);
  if (fp8 && p.contains("fp8")) fp8->set_state(p["fp8"]);
  if (quant && p.contains("promotions"))
    for (const PrecisionPromotion& pr : promotions_from_json(p["promotions"])) quant->promote(pr);
  if (p.contains("stability")) guard.set_state(p["stability"]);
  if (saved == prec.mode && p.contains("static_scale")) static_scale = p["static_scale"].get<double>();
}

}  // namespace

TrainConfig checkpoint_config(const std::string& dir) { return checkpoint_config(verify_checkpoint(dir), dir); }

TrainConfig checkpoint_config(const nlohmann::json& trainer, const std::string& dir) {
  TrainConfig cfg;
  MESHLM_CHECK(trainer.contains("config"), dir + "/trainer.json: no config");
  apply_json(cfg, trainer["config"], dir + "/trainer.json");
  return cfg;
}

// What one step measured, for its record.
struct StepOutcome {
  double loss = 0, lr = 0, norm = 0, scale = 1, secs = 0, comm_secs = 0;
  bool overflow = false, skipped = false;
  double stage_times[2] = {0, 0};  // pipeline: this stage's busy and total seconds of the schedule
  std::vector<std::string> instabilities;  // the stability rules' findings (train/stability.h)
  std::string instability_action;
};

class Trainer::Impl {
 public:
  Impl(const TrainConfig& cfg, Mesh& job_mesh, std::ostream& out, const std::string& resume_dir, bool overwrite);
  TrainResult train();

 private:
  StepOutcome train_step();
  double forward_backward(double scale, StepOutcome& o);
  double reduce_gradients(double* loss);
  double grad_sum_squares();
  void write_numerics(double scale);
  double optimizer_step(double lr, double norm, double scale);
  void end_fp8_step();
  double fp8_gemm_bits();
  // fp8 whose speed is not fp8 hardware's: bf16 products on operands read back from fp8, or
  // real products on a backend without fp8 tensor cores (the codes widened).
  bool fp8_simulated() const { return prec_.fp8 && !(fp8_ && fp8_->real_gemms() && fp8_->fp8_hardware()); }
  void judge_stability(StepOutcome& o);
  std::string act_on_instability(const std::vector<Instability>& found, const std::vector<std::string>& what,
                                 StepOutcome& o);
  std::string promote_sites(const std::vector<Instability>& found);
  std::string nonfinite_gradients();
  void record_instability(const std::vector<Instability>& found, const std::vector<std::string>& what,
                          const std::string& done);
  void record(const StepOutcome& o);
  std::vector<double> pipeline_idle(const StepOutcome& o);
  nlohmann::ordered_json metrics_line(const StepOutcome& o, const std::vector<double>& idle);
  std::string step_line(const StepOutcome& o, const std::vector<double>& idle) const;
  void evaluate();
  bool stop_requested();
  struct Decision {
    bool stop = false, timed_save = false;
  };
  Decision decide();  // every rank the same: stop now? save now (save_every_minutes)?
  void mark(const char* what);  // the watchdog's phase within a step
  void save(const char* why);
  void restore_or_init();
  void check_resume_data(const nlohmann::json& trainer);
  void warn_schedule_change(const nlohmann::json& trainer);
  void describe_run();
  void describe_layout();
  void describe_activations();
  void summarize();
  std::string plot_title() const;
  void periodic_sample();

  const TrainConfig cfg_;
  const std::string resume_dir_;
  RunLog log_;
  ThreadGovernor threads_;  // the OpenMP thread count, adapted between steps on a shared machine
  ProfilingBackend* profiler_ = nullptr;
  std::unique_ptr<Backend> backend_;
  Mesh mesh_;  // the job's mesh, its groups declared clients of the backend's memory
  const ModelConfig mcfg_;
  const int64_t T_, mb_, accum_;
  const std::string tokenizer_spec_;
  const DataIdentity data_id_;  // the data directory, its shards verified against manifest.json
  std::optional<BpeTokenizer> tokenizer_;
  std::string tokenizer_file_;  // the tokenizer a checkpoint carries ("": none)
  const DataLoader train_data_;
  std::unique_ptr<DataLoader> val_data_;
  const BatchPlan batches_;  // this rank's micro-batches of each global batch
  const Precision prec_;
  const Plan plan_;
  Model model_;
  std::unique_ptr<PipelineExecutor> pipeline_;
  // The tied embedding / LM head: the first and the last stage each hold wte and sum its
  // gradient (mesh.tied()) before the data-parallel reduction may touch it; it is [0, tied_end)
  // of the flat buffer (the tied sum and the buckets rely on that).
  const bool tied_copy_;
  const int64_t tied_end_;
  std::unique_ptr<Fp8Recipe> fp8_;
  std::unique_ptr<QuantRecipe> quant_;  // the GEMM formats of the precision ladder
  StabilityGuard guard_;
  double static_scale_ = 1;  // the static loss scale, halved by --on-instability rescale
  std::unique_ptr<GradSync> sync_;
  AdamW opt_;
  LossScaler scaler_;
  const LrSchedule sched_;
  TrainerState st_;
  nlohmann::json cfg_json_;  // the config a checkpoint stores
  Checkpointer checkpointer_;
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<NumericsReport> numerics_;
  double peak_ = 0, peak_all_ = 0, flops_per_step_ = 0;
  std::string peak_how_;  // "given", "measured, ...", "... cached in PATH"
  TrainResult res_;
  double tok_sum_ = 0, time_sum_ = 0;
  std::vector<double> idle_sum_;  // per stage, over the steps after the first
  Clock::time_point run_start_;
  int64_t first_step_ = 0;
  double profiled_secs_ = 0, profiled_comm_secs_ = 0;  // the timed steps' (all but this run's first)
  int64_t profiled_steps_ = 0;
  std::unique_ptr<Watchdog> watchdog_;  // world size > 1 only
  bool long_wait_ = false;  // an eval or a save since the last step: others may still be at it
  Clock::time_point last_save_;
};

Trainer::Impl::Impl(const TrainConfig& cfg, Mesh& job_mesh, std::ostream& out, const std::string& resume_dir,
                    bool overwrite)
    : cfg_(cfg),
      resume_dir_(resume_dir),
      log_(out, job_mesh.rank() == 0),
      threads_(make_thread_governor(cfg.threads)),
      backend_(make_run_backend(cfg, &profiler_)),
      mesh_(job_mesh, *backend_, cfg.comm == "nccl"),
      mcfg_(cfg.model()),
      T_(cfg.seq_len),
      mb_(cfg.micro_batch()),
      accum_(cfg.accumulation_steps()),
      tokenizer_spec_(resolve_tokenizer(cfg, resume_dir)),
      data_id_(verify_data_dir(cfg.data)),
      train_data_(cfg.data, "train", T_, mcfg_.vocab_size, cfg.shuffle == 1, uint64_t(cfg.data_seed)),
      batches_{mesh_.shape().dp, mesh_.dp_rank(), accum_, mb_},
      prec_(cfg.precision, cfg.stochastic_rounding == 1, cfg.master_weights == 1, cfg.loss_scale, uint64_t(cfg.seed)),
      plan_(cfg.plan()),
      model_(mcfg_, *backend_, prec_.compute, plan_, &mesh_.tp(), mesh_.pp_rank(),
             zero_residency(plan_, prec_.compute, param_table(mcfg_, plan_, mesh_.pp_rank(), mesh_.tp_rank()).total(),
                            mesh_.dp_rank())),
      tied_copy_(plan_.mesh.pp > 1 && model_.tied_elems() > 0),
      tied_end_(tied_copy_ ? model_.tied_elems() : 0),
      guard_(cfg.stability()),
      sync_(GradSync::make(plan_, mesh_, model_, tied_end_)),
      opt_(*backend_, model_.table(), DType::fp32, cfg.adamw(), sync_->shard().begin, sync_->shard().end),
      scaler_(cfg.loss_scaler()),
      sched_(cfg.schedule()),
      checkpointer_(mesh_, model_, opt_),
      idle_sum_(size_t(plan_.mesh.pp), 0.0) {
  // Larger than the data's tokenizer: rows no token can use (a smaller one that holds every
  // token id is checked by the loader).
  MESHLM_CHECK(data_id_.vocab_size <= 0 || mcfg_.vocab_size <= data_id_.vocab_size,
               "vocab_size " + std::to_string(mcfg_.vocab_size) + " is larger than the data's: " + cfg.data +
                   "/manifest.json has a " + std::to_string(data_id_.vocab_size) + "-token vocabulary; pass --vocab-size " +
                   std::to_string(data_id_.vocab_size));
  if (!tokenizer_spec_.empty()) tokenizer_.emplace(load_tokenizer(tokenizer_spec_));
  if (tokenizer_ && tokenizer_spec_ != "bytes" && tokenizer_spec_ != "gpt2" && fs::is_regular_file(tokenizer_spec_))
    tokenizer_file_ = tokenizer_spec_;
  if (cfg.eval_batches > 0) {
    val_data_ = std::make_unique<DataLoader>(cfg.data, "val", T_, mcfg_.vocab_size);
    // eval_batches global batches (batch_size sequences each) in chunks of the micro-batch:
    // the same sequences, so the same loss, at any dp and accumulation.
    evaluator_ = std::make_unique<Evaluator>(*val_data_, cfg.eval_batches * (cfg.batch_size / mb_), mb_, T_,
                                             tokenizer_ ? &*tokenizer_ : nullptr);
  }
  if (plan_.mesh.pp > 1)
    pipeline_ = std::make_unique<PipelineExecutor>(model_, mesh_.pp(), plan_.pp_schedule, int(accum_));
  if (prec_.fp8) fp8_ = std::make_unique<Fp8Recipe>(model_, cfg.fp8_scaling());
  if (!prec_.gemm.empty() || !plan_.precision.empty())
    quant_ = std::make_unique<QuantRecipe>(model_, plan_.precision, prec_.gemm, uint64_t(cfg.seed));
  static_scale_ = prec_.static_scale;
  restore_or_init();
  log_.open(cfg.out, !resume_dir.empty(), st_.step, overwrite, cfg.tensorboard == 1);
  const DType peak_dtype = backend_->supports(Op::gemm, prec_.compute) ? prec_.compute : DType::fp32;
  peak_how_ = "given";
  if (cfg.peak_gflops > 0)
    peak_ = cfg.peak_gflops;
  else
    peak_ = machine_peak_gflops(*backend_, peak_dtype, peak_cache_path(cfg.peak_cache), peak_how_);
  flops_per_step_ = mcfg_.flops_per_token(T_) * double(cfg.batch_size * T_);
  peak_all_ = peak_ * double(mesh_.world().size());  // MFU: the global batch against every rank's peak
  describe_run();
  TrainConfig saved = cfg;
  saved.tokenizer = tokenizer_file_.empty() ? tokenizer_spec_ : tokenizer_file_name(tokenizer_file_);  // in the checkpoint
  saved.data = fs::absolute(cfg.data).lexically_normal().string();  // hints: resume matches the data by fingerprint
  saved.out = fs::absolute(cfg.out).lexically_normal().string();
  saved.allow_data_change = 0;  // a permission for one resume, not for the next
  st_.data = {{"path", saved.data}, {"fingerprint", data_id_.fingerprint}};
  cfg_json_ = saved.to_json();
  if (cfg.numerics_report > 0 && mesh_.rank() == 0)
    numerics_ = std::make_unique<NumericsReport>((fs::path(cfg.out) / "numerics.jsonl").string(), !resume_dir.empty(),
                                                 st_.step);
}

// The state of the checkpoint (any layout's: each rank reads its slices), or fresh weights;
// then made this precision mode's (a checkpoint of another mode starts this one).
// The data is matched by its manifest's fingerprint, not by the path the checkpoint recorded:
// moved data resumes, other data is refused unless allowed.
void Trainer::Impl::check_resume_data(const nlohmann::json& trainer) {
  const std::string saved = trainer.contains("data") ? trainer["data"].value("fingerprint", std::string()) : "";
  if (saved.empty() || saved == data_id_.fingerprint) return;
  const std::string was = trainer["data"].value("path", std::string("?"));
  MESHLM_CHECK(cfg_.allow_data_change == 1,
               cfg_.data + ": not the data " + resume_dir_ + " was trained on (" + was + "; the manifests' shard " +
                   "checksums differ" + (data_id_.has_manifest ? "" : ", and " + cfg_.data + " has no manifest.json") +
                   "); pass --data with that data, or --allow-data-change 1 to continue on this data");
  log_.out() << "data    differs from the checkpoint's (" << was << "): continuing on " << cfg_.data
             << " (--allow-data-change)\n";
}

// A resumed run's schedule runs to its own horizon: lr_decay_steps, else steps. When steps
// changed and nothing pins the horizon, the cosine moves under the run; say so, with the fix.
void Trainer::Impl::warn_schedule_change(const nlohmann::json& trainer) {
  const nlohmann::json c = trainer.value("config", nlohmann::json::object());
  const int64_t was = c.value("steps", cfg_.steps);
  const int64_t was_horizon = c.value("lr_decay_steps", int64_t(0)) > 0 ? c["lr_decay_steps"].get<int64_t>() : was;
  const int64_t horizon = cfg_.lr_decay_steps > 0 ? cfg_.lr_decay_steps : cfg_.steps;
  if (horizon == was_horizon || cfg_.lr_schedule != "cosine") return;
  TrainConfig old = cfg_;
  old.steps = was;
  old.lr_decay_steps = was_horizon;
  log_.out() << "warning the cosine schedule's horizon moved from step " << was_horizon << " to " << horizon
             << ": the lr at step " << st_.step << " is " << fmt("%.3g", sched_.at(st_.step)) << " (was "
             << fmt("%.3g", old.schedule().at(st_.step)) << "); --lr-decay-steps " << was_horizon
             << " keeps the old schedule\n";
}

void Trainer::Impl::restore_or_init() {
  st_.rng = {uint64_t(cfg_.seed), 0};
  if (!resume_dir_.empty()) {
    const nlohmann::json trainer = load_checkpoint(resume_dir_, model_, &opt_);
    st_.step = trainer.at("step").get<int64_t>();
    st_.loader.sequences = trainer.at("loader").at("sequences").get<int64_t>();
    st_.rng = {trainer["rng"]["seed"].get<uint64_t>(), trainer["rng"]["counter"].get<uint64_t>()};
    restore_precision_state(trainer, prec_, fp8_.get(), quant_.get(), scaler_, guard_, static_scale_, log_.out());
    check_resume_data(trainer);
    warn_schedule_change(trainer);
    log_.out() << "resumed from " << resume_dir_ << " at step " << st_.step << "\n";
  } else {
    model_.init(uint64_t(cfg_.seed));
    if (!cfg_.init_from.empty()) {
      const HfSource src = locate_hf_source(cfg_.init_from);
      const ImportReport r = import_hf_weights(src.weights, model_, cfg_.vocab_resize == 1);
      log_.out() << "init    " << r.tensors << " tensors (" << r.dtype << ") from " << src.weights
                 << (r.skipped ? ", " + std::to_string(r.skipped) + " buffers or tied copies skipped" : std::string())
                 << (r.note.empty() ? std::string() : "; " + r.note) << "; fresh optimizer, step 0\n";
    }
  }
  if (prec_.fp16_pure) {
    for (Tensor* t : {&model_.params(), &opt_.m(), &opt_.v()}) backend_->round_to_format(DType::fp16, t->as<float>(), t->numel());
  }
  if (!prec_.master_weights) {
    model_.update_compute_weights(prec_.rounding(st_.step));
    model_.master_from_compute_weights();
  }
  // The compute weights from the masters, as after a step (ZeRO-2 rounds each rank's shard and
  // all-gathers the 16-bit copy: the masters outside a shard are not stored).
  sync_->refresh_weights(model_, prec_.rounding(st_.step));
}

TrainResult Trainer::Impl::train() {
  StopListener signals;  // stop signals now ask for a stop at the next step's end (core/stop_signals.h)
  if (mesh_.world().size() > 1 && cfg_.watchdog > 0)
    watchdog_ = std::make_unique<Watchdog>(cfg_.watchdog, cfg_.out, mesh_.rank(), mesh_.world().size());
  run_start_ = last_save_ = Clock::now();
  first_step_ = st_.step;
  if (st_.step < cfg_.steps && stop_requested()) {  // a signal while the run was being set up
    log_.line("interrupted (" + stop_signal_name() + ") before the first step: nothing new to save\n");
    res_.interrupted = true;
    res_.checkpoint = resume_dir_;
  }
  while (st_.step < cfg_.steps && !res_.interrupted) {
    threads_.update();
    const StepOutcome o = train_step();
    long_wait_ = false;
    record(o);
    if (watchdog_) watchdog_->step_done(o.secs);
    const bool last = st_.step == cfg_.steps;
    if (evaluator_ && ((cfg_.eval_every > 0 && st_.step % cfg_.eval_every == 0) || last)) {
      evaluate();
      if (cfg_.plots && !last) log_.plot(plot_title());
    }
    if (cfg_.sample_every > 0 && st_.step % cfg_.sample_every == 0) periodic_sample();
    const Decision d = decide();
    if (d.stop) {
      log_.line("interrupted (" + stop_signal_name() + ") at step " + std::to_string(st_.step) +
                (cfg_.checkpoints ? "; saving a checkpoint\n" : "\n"));
      if (cfg_.checkpoints) save("interrupted");
      res_.interrupted = true;
      break;
    }
    if (cfg_.checkpoints && last) save("end of run");
    if (cfg_.checkpoints && !last && cfg_.save_every > 0 && st_.step % cfg_.save_every == 0) save("save_every");
    else if (cfg_.checkpoints && !last && d.timed_save) save("save_every_minutes");
    if (!last) {  // the live progress line (a terminal only), erased before the next line
      const double eta = since(run_start_) / double(st_.step - first_step_) * double(cfg_.steps - st_.step);
      log_.progress(st_.step, cfg_.steps, eta);
    }
  }
  if (cfg_.plots && st_.step > first_step_) log_.plot(plot_title());
  summarize();
  return res_;
}

// A short sample of the model as it trains (rank 0 alone, whole models only: tp 1, pp 1; the
// other data-parallel ranks wait for it at the next step's first collective).
void Trainer::Impl::periodic_sample() {
  if (mesh_.rank() != 0 || !tokenizer_ || plan_.mesh.tp > 1 || plan_.mesh.pp > 1 || plan_.zero_stage() == 3) return;
  long_wait_ = true;
  SampleOptions opt;
  opt.tokens = cfg_.sample_tokens;
  opt.temperature = 0.8;
  opt.top_k = 40;
  opt.seed = uint64_t(st_.step);
  opt.vocab_limit = tokenizer_->vocab_size();
  opt.stop_token = tokenizer_->eot_id();
  std::vector<int32_t> prompt = cfg_.sample_prompt.empty() ? std::vector<int32_t>{} : tokenizer_->encode(cfg_.sample_prompt);
  if (prompt.empty()) prompt = tokenizer_->eot_id() >= 0 ? std::vector<int32_t>{tokenizer_->eot_id()} : tokenizer_->encode("\n");
  std::string text = cfg_.sample_prompt;
  for (int32_t t : sample(model_, prompt, opt))
    if (!tokenizer_->is_special(t)) text += tokenizer_->token_bytes(t);
  log_.line("sample  step " + std::to_string(st_.step) + " | " + text + "\n");
}

std::string Trainer::Impl::plot_title() const {
  return fs::path(cfg_.out).lexically_normal().filename().string() + ": " + mcfg_.describe() + ", " + cfg_.precision +
         ", " + plan_.mesh.describe();
}

// One optimizer step: forward and backward of the global batch's micro-batches, the gradient
// reduced across the ranks, checked, clipped and applied.
StepOutcome Trainer::Impl::train_step() {
  const auto t0 = Clock::now();
  StepOutcome o;
  model_.zero_grad();
  if (quant_) quant_->begin_step(st_.step);
  // The loss is multiplied by the loss scale before backward (fp16), so the gradients hold
  // scale * gradient until the optimizer divides it back out.
  o.scale = prec_.dynamic_scaling ? scaler_.scale() : static_scale_;
  mark("forward and backward");
  o.loss = forward_backward(o.scale, o);
  mark("the gradient reduction");
  o.comm_secs = reduce_gradients(&o.loss);
  mark("the gradient norm and the optimizer step");
  const Zero1Shard shard = sync_->shard();
  if (prec_.fp16_pure) backend_->round_to_format(DType::fp16, model_.grad_at(shard.begin), shard.size());
  // One number decides overflow, clipping and the norm on every rank: the sum of squares of
  // the whole reduced gradient (inf/NaN iff any element is).
  const double sumsq = grad_sum_squares();
  o.overflow = !std::isfinite(sumsq);
  o.norm = std::sqrt(sumsq) / o.scale;
  if (cfg_.numerics_report > 0 && (st_.step + 1) % cfg_.numerics_report == 0) write_numerics(o.scale);
  judge_stability(o);  // may skip the step, halve a static loss scale, promote sites, or stop the run
  if (prec_.dynamic_scaling) o.skipped = !scaler_.update(o.overflow) || o.skipped;  // throws below the minimum scale
  o.lr = sched_.at(st_.step);
  if (!o.skipped) o.comm_secs += optimizer_step(o.lr, o.norm, o.scale);
  if (!o.skipped) guard_.accept(o.loss, o.norm);
  end_fp8_step();
  st_.step++;
  st_.loader.sequences += batches_.global_batch();
  st_.epoch = st_.loader.sequences / train_data_.windows_per_epoch();
  backend_->synchronize();  // a device backend's step ends when its queued work has (no-op on the cpu)
  o.secs = since(t0);
  return o;
}

// The step's micro-batches through this rank's stage: accumulated one after another, or by the
// pipeline's schedule. Each rank's mean over its micro-batch is scaled so that the sum over
// micro-batches and ranks is the mean over the global batch (times the loss scale). Returns
// this rank's share of the loss (the pipeline's: every stage's).
double Trainer::Impl::forward_backward(double scale, StepOutcome& o) {
  float* grads = model_.grads().as<float>();
  auto plant = [&] {
    const float inf = INFINITY;
    if (cfg_.inject_inf_at_step == st_.step + 1 && mesh_.dp_rank() == 0) backend_->upload(grads, &inf, sizeof inf);
  };
  sync_->begin_step(grads);
  FaultHooks hooks(*sync_, plant);  // the last micro-batch's backward: reduce buckets as they finish
  UnitHooks* last_hooks = sync_->overlapped() ? &hooks : nullptr;
  const float dloss = float(scale / double(accum_ * batches_.dp));
  double loss = 0;
  if (pipeline_) {
    std::vector<std::vector<int32_t>> xs(static_cast<size_t>(accum_)), ys(static_cast<size_t>(accum_));
    std::vector<const int32_t*> xp, yp;
    for (int64_t k = 0; k < accum_; k++) {
      train_data_.read(batches_.first(st_.loader.sequences, k), mb_, xs[size_t(k)], ys[size_t(k)]);
      xp.push_back(xs[size_t(k)].data());
      yp.push_back(ys[size_t(k)].data());
    }
    loss = pipeline_->step(xp, yp, mb_, T_, dloss, last_hooks) / double(accum_);
    mesh_.pp().all_reduce(&loss, 1, DType::fp64);  // the last stage's
    o.stage_times[0] = pipeline_->times().busy_s;
    o.stage_times[1] = pipeline_->times().total_s;
  } else {
    std::vector<int32_t> x, y;
    for (int64_t k = 0; k < accum_; k++) {
      train_data_.read(batches_.first(st_.loader.sequences, k), mb_, x, y);
      loss += model_.forward(x.data(), y.data(), mb_, T_, dloss) / double(accum_);
      model_.set_hooks(k == accum_ - 1 ? last_hooks : nullptr);
      model_.backward();
      model_.set_hooks(nullptr);
    }
  }
  if (!last_hooks) plant();
  return loss;
}

// The tied embedding summed over the pipeline's ends, then the data-parallel reduction, and
// the loss averaged over the ranks. Returns the seconds of communication left after backward.
double Trainer::Impl::reduce_gradients(double* loss) {
  const auto t0 = Clock::now();
  float* grads = model_.grads().as<float>();
  if (tied_copy_) mesh_.tied().all_reduce(grads, tied_end_, DType::fp32);  // wte is at offset 0
  sync_->finish(grads);
  if (mesh_.shape().dp > 1) {
    mesh_.dp().all_reduce(loss, 1, DType::fp64);
    *loss /= double(mesh_.shape().dp);
  }
  return since(t0);
}

// The sum of squares of the global gradient: each tp rank's own slices, and what several tp
// ranks hold (replicated parameters, shared kv heads) counted once (ParamEntry::counted_here); under ZeRO-1 only the part of each inside this rank's
// reduced shard; each stage its own layers, the tied wte counted on the first stage only;
// then summed over the groups (the data-parallel ranks' shards add up; otherwise every rank
// holds it all and max agrees).
double Trainer::Impl::grad_sum_squares() {
  const Zero1Shard shard = sync_->shard();
  const MeshShape& m = mesh_.shape();
  double sumsq = 0;
  if (m.tp == 1 && m.pp == 1) {
    sumsq = backend_->sum_squares(DType::fp32, model_.grad_at(shard.begin), shard.size());
  } else {
    for (const ParamEntry& e : model_.table().entries()) {
      const int64_t lo = std::max(e.offset, shard.begin), hi = std::min(e.offset + e.numel(), shard.end);
      const bool counted = e.counted_here() &&
                           !(tied_copy_ && !model_.stage().first && e.offset < tied_end_);
      if (lo < hi && counted) sumsq += backend_->sum_squares(DType::fp32, model_.grad_at(lo), hi - lo);
    }
    if (m.tp > 1) mesh_.tp().all_reduce(&sumsq, 1, DType::fp64);
    if (m.pp > 1) mesh_.pp().all_reduce(&sumsq, 1, DType::fp64);
  }
  if (m.dp > 1) mesh_.dp().all_reduce(&sumsq, 1, DType::fp64, sync_->norm_op());
  return sumsq;
}

void Trainer::Impl::write_numerics(double scale) {
  sync_->gather_masters(model_);  // a collective: every rank takes part
  if (pipeline_ && mesh_.tp_rank() == 0 && mesh_.dp_rank() == 0) {
    const std::vector<NumericsEntry> all = gather_numerics(model_, mesh_.pp(), plan_);
    if (numerics_) numerics_->write(st_.step + 1, all, prec_.compute, scale);
  } else if (numerics_) {
    numerics_->write(st_.step + 1, model_, scale);
  }
}

// Clip, update this rank's shard of the masters, refresh every rank's compute weights.
// Returns the seconds the weight exchange took.
double Trainer::Impl::optimizer_step(double lr, double norm, double scale) {
  const float clip = clip_factor(norm, cfg_.grad_clip);
  const Zero1Shard shard = sync_->shard();
  // Round-to-nearest 16-bit weights: the refresh fused into AdamW (every strategy rounds
  // exactly the elements this rank's optimizer updates: the whole buffer or its shard).
  WeightRounding rounding = prec_.rounding(st_.step + 1);
  RoundedCopy copy;
  if (model_.dtype() != DType::fp32 && !rounding.stochastic && !prec_.fp16_pure && shard.end > shard.begin) {
    copy = {model_.dtype(), model_.compute_at(shard.begin)};
    rounding.done_by_optimizer = true;
  }
  opt_.step(DType::fp32, model_.master_at(shard.begin), model_.grad_at(shard.begin), float(lr), float(clip / scale),
            st_.step + 1 - scaler_.skipped_steps(), prec_.fp16_pure, copy);
  const double comm = sync_->refresh_weights(model_, rounding);
  if (!prec_.master_weights) {  // the weights are the bf16 values: whole again everywhere
    model_.master_from_compute_weights();
    sync_->masters_refreshed();
  }
  return comm;
}

// fp8: the same scales everywhere: the max over every rank (and tp slice) of the step's amaxes.
void Trainer::Impl::end_fp8_step() {
  if (!fp8_) return;
  if (mesh_.world().size() > 1) {
    std::vector<float> amax = fp8_->step_amaxes();
    mesh_.world().all_reduce(amax.data(), int64_t(amax.size()), DType::fp32, ReduceOp::max);
    fp8_->set_step_amaxes(amax);
  }
  fp8_->end_step();
}

// fp8's bits per GEMM operand, by FLOPs: 8 in the blocks' Linears, 16 in the LM head.
double Trainer::Impl::fp8_gemm_bits() {
  double blocks = 0;
  for (Linear* l : model_.block_linears()) blocks += double(l->spec().in) * double(l->spec().out);
  const int64_t held = int64_t(model_.stage().layers(mcfg_.n_layer).size());
  blocks *= double(mcfg_.n_layer) / double(std::max<int64_t>(1, held));
  const double head = double(mcfg_.n_embd) * double(mcfg_.vocab_size);
  return (8 * blocks + 16 * head) / (blocks + head);
}

// ---- the stability rules (train/stability.h) ----

// What is wrong with this step, judged on numbers every rank holds alike (the loss and norm are
// reduced; the sites' counts are summed here), so every rank acts the same. Under dynamic loss
// scaling a non-finite gradient is the scaler's to handle (it skips and halves), not a finding.
void Trainer::Impl::judge_stability(StepOutcome& o) {
  if (quant_) {
    std::vector<double> c = quant_->step_counts();
    if (mesh_.world().size() > 1) mesh_.world().all_reduce(c.data(), int64_t(c.size()), DType::fp64);
    quant_->set_step_counts(c);
  }
  const std::vector<Instability> found =
      guard_.check(o.loss, o.norm, o.overflow && !prec_.dynamic_scaling, quant_.get());
  if (found.empty()) return;
  std::vector<std::string> what;  // described before any promotion changes the sites
  for (const Instability& i : found) what.push_back(i.describe(quant_.get()));
  const std::string done = act_on_instability(found, what, o);
  for (const Instability& i : found) o.instabilities.push_back(i.kind);
  o.instability_action = instability_action_name(guard_.config().action);
  record_instability(found, what, done);
}

// The action of --on-instability; returns what it did, for the log. stop throws after saving.
std::string Trainer::Impl::act_on_instability(const std::vector<Instability>& found,
                                              const std::vector<std::string>& what, StepOutcome& o) {
  const bool step_wide = std::any_of(found.begin(), found.end(), [](const Instability& i) { return i.step_wide(); });
  switch (guard_.config().action) {
    case InstabilityAction::warn: return "warned only (--on-instability warn)";
    case InstabilityAction::skip: o.skipped = true; return "skipped the update";
    case InstabilityAction::rescale:
      o.skipped = true;
      if (prec_.compute == DType::fp16 && !prec_.dynamic_scaling) {
        static_scale_ /= 2;
        return "skipped the update, loss scale halved to " + fmt("%g", static_scale_);
      }
      return prec_.dynamic_scaling ? "skipped the update (the dynamic loss scale adapts by itself)"
                                   : "skipped the update (no loss scale to rescale in " + prec_.mode + ")";
    case InstabilityAction::promote: {
      if (step_wide) o.skipped = true;
      const std::string p = promote_sites(found);
      return (step_wide ? "skipped the update; " : "") + p;
    }
    case InstabilityAction::stop: {
      std::string where;
      for (const Instability& i : found)
        if (!i.step_wide()) where = quant_->sites()[size_t(i.site)].name;
      if (where.empty() && o.overflow) where = nonfinite_gradients();
      record_instability(found, what, "stopped");
      if (cfg_.checkpoints) save("instability");
      throw Error("instability at step " + std::to_string(st_.step + 1) + ": " + what.front() +
                  (where.empty() ? "" : "; at " + where) + " (--on-instability stop; the last checkpoint holds the state before this step)");
    }
  }
  return "";
}

// Promotes each site a finding names, or for a step-wide finding the site that saturated most,
// one rung up the ladder (its +options kept where the new format takes them).
std::string Trainer::Impl::promote_sites(const std::vector<Instability>& found) {
  if (!quant_) return "nothing to promote: no GEMM formats (" + prec_.mode + ")";
  std::vector<int64_t> sites;
  for (const Instability& i : found) {
    const int64_t s = i.step_wide() ? StabilityGuard::worst_site(*quant_) : i.site;
    if (s >= 0 && std::find(sites.begin(), sites.end(), s) == sites.end()) sites.push_back(s);
  }
  std::map<std::string, std::vector<std::string>> moves;  // "from -> to": the sites
  for (int64_t s : sites) {
    const std::string from = quant_->sites()[size_t(s)].format.name, base = quant_->sites()[size_t(s)].format.base;
    const std::string up = promoted_format(base);
    if (up.empty()) continue;
    const std::string next = up == "bf16" ? up : up + from.substr(base.size());  // the +options kept
    quant_->promote({st_.step + 1, s, next, found.front().kind});
    moves[from + " -> " + next].push_back(quant_->sites()[size_t(s)].name);
  }
  if (moves.empty()) return "nothing to promote (the sites are bf16 already)";
  std::string done;
  for (const auto& [move, names] : moves) {
    done += (done.empty() ? "promoted " : "; ") + std::to_string(names.size()) + " site" + (names.size() > 1 ? "s " : " ") +
            move + " (";
    for (size_t i = 0; i < std::min<size_t>(3, names.size()); i++) done += (i ? ", " : "") + names[i];
    done += names.size() > 3 ? ", ...)" : ")";
  }
  return done + ", precision plan version " + std::to_string(quant_->promotions().size());
}

// The parameters of this rank whose gradients are not finite, nearest the loss first.
std::string Trainer::Impl::nonfinite_gradients() {
  const Zero1Shard shard = sync_->shard();
  std::vector<std::string> bad;
  for (const ParamEntry& e : model_.table().entries()) {
    const int64_t lo = std::max(e.offset, shard.begin), hi = std::min(e.offset + e.numel(), shard.end);
    if (lo < hi && !std::isfinite(backend_->sum_squares(DType::fp32, model_.grad_at(lo), hi - lo))) bad.push_back(e.name);
  }
  if (bad.empty()) return "";
  std::string s = "gradients not finite in " + std::to_string(bad.size()) + " parameters, nearest the loss: ";
  for (size_t i = 0; i < std::min<size_t>(3, bad.size()); i++) s += (i ? ", " : "") + bad[bad.size() - 1 - i];
  return s;
}

// The log line and the numerics report's event lines (numerics.jsonl, opened on the first).
void Trainer::Impl::record_instability(const std::vector<Instability>& found, const std::vector<std::string>& what,
                                       const std::string& done) {
  if (mesh_.rank() != 0) return;
  std::string line = "instability step " + std::to_string(st_.step + 1) + " | " + what.front();
  if (found.size() > 1) line += " (and " + std::to_string(found.size() - 1) + " more: numerics.jsonl)";
  log_.line(line + " -> " + done + "\n");
  if (!numerics_)
    numerics_ = std::make_unique<NumericsReport>((fs::path(cfg_.out) / "numerics.jsonl").string(), !resume_dir_.empty(),
                                                 st_.step);
  for (size_t k = 0; k < found.size(); k++) {
    nlohmann::json e = {{"step", st_.step + 1}, {"event", found[k].kind},
                        {"action", instability_action_name(guard_.config().action)}, {"done", done}, {"what", what[k]}};
    if (!found[k].step_wide()) e["site"] = quant_->sites()[size_t(found[k].site)].name;
    numerics_->write_event(e);
  }
}

// The step's record: metrics.jsonl, the console line, the profile, the pipeline's bubble.
void Trainer::Impl::record(const StepOutcome& o) {
  tok_sum_ += double(cfg_.batch_size * T_);
  time_sum_ += o.secs;
  if (st_.step == first_step_ + 1) describe_activations();  // allocated by the first forward
  const std::vector<double> idle = pipeline_idle(o);
  if (profiler_ && st_.step == first_step_ + 1) {
    profiler_->reset();  // the first step JIT-compiles GEMMs and touches fresh memory
  } else if (profiler_) {
    profiled_secs_ += o.secs;
    profiled_comm_secs_ += o.comm_secs;
    profiled_steps_++;
  }
  res_.last_loss = o.loss;
  MESHLM_CHECK(std::isfinite(o.loss), "step " + std::to_string(st_.step) + ": the loss is not finite (" +
                                          (prec_.fp16_pure ? "the pure-fp16 recipe diverged" : "lr too high?") +
                                          "); stopping");
  log_.metrics(metrics_line(o, idle));
  if (!o.instabilities.empty()) res_.instability_steps++;
  if (o.skipped) res_.skipped_steps++;
  if (o.skipped && prec_.dynamic_scaling) {
    log_.line("overflow at step " + std::to_string(st_.step) + ": inf/NaN in the gradients, step skipped, loss scale " +
              fmt("%g", o.scale) + " -> " + fmt("%g", scaler_.scale()) + "\n");
  }
  const bool edge = st_.step == first_step_ + 1 || st_.step == cfg_.steps;
  if (edge || st_.step % cfg_.log_every == 0 || o.skipped) log_.line(step_line(o, idle));
}

// Pipeline bubble: each stage's idle share of the pipeline's schedule (the longest stage's
// span: a stage that finishes early waits for the rest at the next collective).
std::vector<double> Trainer::Impl::pipeline_idle(const StepOutcome& o) {
  const int pp = plan_.mesh.pp;
  std::vector<double> idle(size_t(pp), 0.0);
  if (!pipeline_) return idle;
  std::vector<double> times(size_t(2 * pp));
  mesh_.pp().all_gather(o.stage_times, times.data(), std::vector<int64_t>(size_t(pp), 2), DType::fp64);
  double span = 0;
  for (int k = 0; k < pp; k++) span = std::max(span, times[size_t(2 * k + 1)]);
  for (int k = 0; k < pp; k++) idle[size_t(k)] = span > 0 ? 1.0 - times[size_t(2 * k)] / span : 0.0;
  if (st_.step > first_step_ + 1)  // the first step warms up (GEMM JIT, fresh memory)
    for (int k = 0; k < pp; k++) idle_sum_[size_t(k)] += idle[size_t(k)];
  return idle;
}

nlohmann::ordered_json Trainer::Impl::metrics_line(const StepOutcome& o, const std::vector<double>& idle) {
  const double tps = double(cfg_.batch_size * T_) / o.secs;
  nlohmann::ordered_json line = {{"step", st_.step}, {"loss", o.loss}, {"lr", o.lr}};
  line["grad_norm"] = o.overflow ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.norm);
  line["ms_per_step"] = o.secs * 1e3;
  line["tokens_per_s"] = tps;
  line["mfu"] = flops_per_step_ / o.secs / (peak_all_ * 1e9);
  if (prec_.dynamic_scaling || static_scale_ != 1.0) line["loss_scale"] = o.scale;
  if (o.skipped) line["skipped"] = true;
  if (!o.instabilities.empty()) {
    line["instability"] = o.instabilities;
    line["instability_action"] = o.instability_action;
  }
  if (fp8_simulated() || quant_) line["quantization_simulated"] = true;  // the speed figures are not fp8/fp4 hardware's
  if (fp8_) line["fp8_gemm"] = fp8_->real_gemms() ? "real" : "simulated";
  line["rss_mib"] = current_rss_mib();  // this rank's resident memory now (rank 0's line)
  if (pipeline_) line["pp_idle"] = idle;  // per stage, fraction of the step
  if (plan_.mesh.tp > 1) {  // tensor-parallel payload of this step (formula: ((16 L + 8) N C + 12 N) bytes x accum)
    line["tp_mib"] = double(model_.tp_bytes()) / double(1 << 20);
    model_.reset_tp_bytes();
  }
  // The reduction backward did not hide.
  if (sync_->reports_exposed()) line["comm_wait_ms"] = sync_->take_exposed_seconds() * 1e3;
  if (plan_.zero_stage() == 3) line["gather_wait_ms"] = sync_->take_gather_wait_seconds() * 1e3;
  return line;
}

std::string Trainer::Impl::step_line(const StepOutcome& o, const std::vector<double>& idle) const {
  const double tps = double(cfg_.batch_size * T_) / o.secs, mfu = flops_per_step_ / o.secs / (peak_all_ * 1e9);
  std::string s = "step " + std::to_string(st_.step) + "/" + std::to_string(cfg_.steps) + " | loss " +
                  fmt("%.4f", o.loss) + " | lr " + fmt("%.2e", o.lr) + " | norm " + fmt("%.3f", o.norm);
  if (prec_.dynamic_scaling) s += " | scale " + fmt("%g", o.scale);
  s += " | " + fmt("%.0f", o.secs * 1e3) + " ms | " + fmt("%.0f", tps) + " tok/s | MFU " + fmt("%.1f", mfu * 100) + "%";
  if (prec_.fp8 || quant_) s += prec_.fp8 ? " (fp8 simulated)" : " (quantization simulated)";
  if (pipeline_) s += " | idle " + fmt("%.0f", 100.0 * *std::max_element(idle.begin(), idle.end())) + "%";
  return s + "\n";
}

void Trainer::Impl::evaluate() {
  if (watchdog_) watchdog_->enter(Watchdog::Phase::eval, "eval (or waiting for the ranks evaluating)", st_.step);
  long_wait_ = true;
  // One tensor-parallel group evaluates and the rest go on; under ZeRO-3 every data-parallel
  // rank runs the same batches (each forward gathers weights from all of them).
  const bool every_dp_rank = plan_.zero_stage() == 3;
  if (mesh_.dp_rank() != 0 && !every_dp_rank) return;
  if (profiler_) profiler_->set_enabled(false);
  // Before each batch: the thread count, and whether a second stop signal cuts the eval short.
  const EvalResult v = *evaluator_->run(model_, pipeline_.get(), mesh_, [this] {
    threads_.update();
    return StopSignals::count() >= 2;
  }, every_dp_rank);
  if (v.batches < evaluator_->batches()) {
    log_.line("eval    step " + std::to_string(st_.step) + " | cut short by a second stop signal after " +
              std::to_string(v.batches) + " batches; not recorded\n");
    if (profiler_) profiler_->set_enabled(true);
    return;
  }
  res_.val_loss = v.loss;
  res_.val_loss_per_byte = v.loss_per_byte;
  nlohmann::ordered_json line = {{"step", st_.step}, {"val_loss", v.loss}};
  if (v.loss_per_byte >= 0) line["val_loss_per_byte"] = v.loss_per_byte;
  log_.metrics(line);
  if (profiler_) profiler_->set_enabled(true);
  log_.line("eval    step " + std::to_string(st_.step) + " | val_loss " + fmt("%.4f", v.loss) + " nats/token" +
            (v.loss_per_byte >= 0 ? ", " + fmt("%.4f", v.loss_per_byte) + " nats/byte" : std::string()) + "\n");
}

bool Trainer::Impl::stop_requested() { return decide().stop; }

// One all-reduce: any rank's stop signal stops every rank at this step; rank 0's clock decides
// a timed save (the ranks' clocks differ).
Trainer::Impl::Decision Trainer::Impl::decide() {
  mark("the stop and save agreement");
  double v[2] = {StopSignals::count() > 0 ? 1.0 : 0.0, 0.0};
  if (mesh_.rank() == 0 && cfg_.save_every_minutes > 0 && since(last_save_) >= cfg_.save_every_minutes * 60) v[1] = 1;
  if (mesh_.world().size() > 1) mesh_.world().all_reduce(v, 2, DType::fp64, ReduceOp::max);
  return {v[0] > 0, v[1] > 0};
}

// A step after an eval or a save gets the long allowance too: the ranks that did not evaluate
// or write wait for those that did at the step's first collective.
void Trainer::Impl::mark(const char* what) {
  if (watchdog_)
    watchdog_->enter(st_.step == first_step_ || long_wait_ ? Watchdog::Phase::first_step : Watchdog::Phase::step, what,
                     st_.step);
}

void Trainer::Impl::save(const char* why) {
  if (watchdog_) watchdog_->enter(Watchdog::Phase::save, "a checkpoint save", st_.step);
  long_wait_ = true;
  last_save_ = Clock::now();
  const std::string dir = (fs::path(cfg_.out) / checkpoint_dir_name(st_.step)).string();
  st_.precision = precision_state(prec_, fp8_.get(), quant_.get(), scaler_, guard_, static_scale_);
  const auto t0 = Clock::now();
  if (cfg_.checkpoint_format == "parts") {  // every rank its own slices; nothing gathered
    save_checkpoint_parts(dir, mesh_, model_, opt_, tied_copy_ && !model_.stage().first, st_, cfg_json_, tokenizer_file_);
  } else {
    sync_->gather_masters(model_);
    checkpointer_.save(dir, st_, cfg_json_, tokenizer_file_);
  }
  res_.checkpoint = dir;
  log_.line("saved   " + dir + " (" + why + ", " + fmt("%.2f", since(t0)) + " s)\n");
  if (mesh_.rank() == 0 && cfg_.keep_last > 0)
    for (const std::string& old : prune_checkpoints(cfg_.out, cfg_.keep_last))
      log_.line("removed " + old + " (keep_last " + std::to_string(cfg_.keep_last) + ")\n");
}

// ---- what the log says about the run ----

void Trainer::Impl::describe_run() {
  std::ostream& out = log_.out();
  out << "model   " << mcfg_.describe() << "\n"
      << "batch   " << cfg_.batch_size << " x " << T_ << " tokens (" << accum_ << " micro-batch"
      << (accum_ > 1 ? "es" : "") << " of " << mb_ << "), " << cfg_.steps << " steps\n"
      << "compute " << backend_->name() << " backend, " << omp_get_max_threads() << " threads"
      << (threads_.adaptive() ? " (of " + std::to_string(threads_.cpus()) + " CPUs: fewer while other programs keep them busy)" : "")
      << ", peak "
      << fmt("%.0f", peak_) << " GFLOP/s ("
      << peak_how_
      << (prec_.fp8 || quant_ ? "; quantization is simulated: its speed is bf16 arithmetic plus quantization" : "")
      << ")\n"
      << "numerics " << prec_.describe() << "\n"
      << (quant_ ? "formats " + quant_->describe() + "\n" : std::string())
      << "data    " << cfg_.data << " ("
      << (tokenizer_ ? "tokenizer " + tokenizer_spec_ + ", " + std::to_string(tokenizer_->vocab_size()) + " tokens"
                     : std::string("tokenizer unknown: no manifest.json and no --tokenizer; no per-byte loss"))
      << ")\n"
      << "run     " << cfg_.out << "\n";
  const MemoryEstimate mem = estimate_memory(cfg_, mesh_.pp_rank());
  const MemoryLimit lim = memory_available();
  out << "memory  at least " << mem.describe() << " per rank (scratch not counted); " << fmt("%.2f", lim.bytes / double(1ull << 30))
      << " GiB available (" << lim.source << ")\n";
  if (mesh_.world().size() > 1) describe_layout();
  out.flush();
}

// The layout line and the bytes per parameter this rank holds (P local elements of the
// model's total).
void Trainer::Impl::describe_layout() {
  std::ostream& out = log_.out();
  const MeshShape& m = mesh_.shape();
  const double mib = 1.0 / (1 << 20), p = double(model_.table().total()), total = double(mcfg_.num_parameters());
  out << "layout  " << m.describe() << " (" << mesh_.world().kind() << "), " << sync_->describe();
  if (m.tp > 1)
    out << "; tensor parallel" << (plan_.sequence_parallel ? " + sequence parallel" : "") << ": "
        << fmt("%.1f", 100.0 * p / total) << "% of the parameters per rank";
  if (m.pp > 1) {
    std::string layers;
    for (int64_t n : plan_.pp_split) {
      if (!layers.empty()) layers += ",";
      layers += std::to_string(n);
    }
    const int v = plan_.pp_virtual;
    out << "; pipeline " << pipeline_schedule_name(plan_.pp_schedule) << ", " << accum_ << " micro-batch"
        << (accum_ > 1 ? "es" : "") << ", layers " << layers << " per " << (v > 1 ? "virtual " : "") << "stage";
    if (v > 1) out << " (" << v << " chunks per rank: rank s holds virtual stages s, s + " << m.pp << ", ...)";
    if (accum_ < 2 * m.pp)
      out << "\nnote    " << accum_ << " micro-batch" << (accum_ > 1 ? "es" : "") << " for " << m.pp
          << " stages: each stage idles about " << fmt("%.0f", 100.0 * predicted_bubble(m.pp, int(accum_), v))
          << "% of a step; a smaller --micro-batch-size gives more micro-batches and a smaller bubble";
  }
  out << "\n";
  // What this rank holds, measured from its buffers, against the stage's formula.
  const MemoryEstimate est = estimate_memory(cfg_, mesh_.pp_rank());
  const double masters = double(model_.params().nbytes()), grads = double(model_.grads().nbytes());
  const double copy = prec_.compute != DType::fp32 ? double(model_.compute_weights().nbytes()) : 0;
  const double moments = double(opt_.m().nbytes() + opt_.v().nbytes());
  out << "memory  per rank: masters " << fmt("%.1f", masters * mib) << " MiB, "
      << (copy > 0 ? "16-bit copy " + fmt("%.1f", copy * mib) + " MiB, " : std::string()) << "grads "
      << fmt("%.1f", grads * mib) << " MiB, Adam moments " << fmt("%.1f", moments * mib) << " MiB = "
      << fmt("%.2f", (masters + copy + grads + moments) / p) << " bytes/parameter held (formula: " << est.formula << ")";
  if (est.working > 0) out << "; ZeRO windows about " << fmt("%.1f", est.working * mib) << " MiB (the largest units)";
  out << "\n";
}

void Trainer::Impl::describe_activations() {
  const double mib = 1.0 / double(1 << 20);
  res_.activation_mib = double(model_.activation_bytes()) * mib;
  res_.saved_activation_mib = double(model_.saved_activation_bytes()) * mib;
  const double copy = prec_.compute != DType::fp32 ? double(model_.compute_weights().nbytes()) : 0;
  res_.held_mib = (double(model_.params().nbytes() + model_.grads().nbytes() + opt_.m().nbytes() + opt_.v().nbytes()) +
                   copy + double(model_.activation_bytes()) + double(sync_->working_set_bytes())) * mib;
  if (sync_->working_set_bytes() > 0)
    log_.line("memory  ZeRO windows per rank: " + fmt("%.1f", double(sync_->working_set_bytes()) * mib) +
              " MiB allocated by the first step (gathered weights and gradient windows)\n");
  if (mesh_.world().size() == 1 && model_.recompute() == Recompute::none) return;
  const int slots = model_.slots();
  log_.line("memory  activations per rank: " + fmt("%.1f", res_.activation_mib) + " MiB (recompute " +
            recompute_name(model_.recompute()) + ": " + std::to_string(slots) + " micro-batch" +
            (slots > 1 ? "es" : "") + " in flight x " + fmt("%.2f", res_.saved_activation_mib) + " MiB saved + " +
            fmt("%.2f", res_.activation_mib - slots * res_.saved_activation_mib) + " MiB scratch)\n");
}

// The end of the run: the profile, the pipeline's measured bubble, the result's figures.
void Trainer::Impl::summarize() {
  std::ostream& out = log_.out();
  const int dp = mesh_.shape().dp, pp = plan_.mesh.pp;
  if (profiler_ && profiled_steps_ > 0) {
    out << "profile (" << profiled_steps_ << " steps after the first; per step)\n";
    std::map<std::string, double> extra;
    if (dp > 1) extra["communication (exposed)"] = profiled_comm_secs_;
    profiler_->print(out, profiled_secs_, profiled_steps_, extra);
    double inside = 0;
    for (const auto& [name, t] : profiler_->times()) {
      res_.kernel_ms[name] = t.seconds / double(profiled_steps_) * 1e3;
      inside += t.seconds;
    }
    if (dp > 1) res_.kernel_ms["communication (exposed)"] = profiled_comm_secs_ / double(profiled_steps_) * 1e3;
    res_.kernel_ms["(outside kernels)"] =
        (profiled_secs_ - inside - (dp > 1 ? profiled_comm_secs_ : 0)) / double(profiled_steps_) * 1e3;
  }
  if (pipeline_ && st_.step - first_step_ > 1) {
    const double n = double(st_.step - first_step_ - 1);
    out << "pipeline idle per stage (mean of " << (st_.step - first_step_ - 1) << " steps after the first):";
    for (int k = 0; k < pp; k++) {
      res_.pp_idle.push_back(idle_sum_[size_t(k)] / n);
      out << (k ? ", " : " ") << "stage " << k << " " << fmt("%.1f", 100.0 * res_.pp_idle.back()) << "%";
    }
    out << "; predicted " << fmt("%.1f", 100.0 * predicted_bubble(pp, int(accum_), plan_.pp_virtual))
        << (plan_.pp_virtual > 1 ? "% = (pp - 1) / (v m + pp - 1)\n" : "% = (pp - 1) / (m + pp - 1)\n");
  }
  res_.pp_idle_predicted = pipeline_ ? predicted_bubble(pp, int(accum_), plan_.pp_virtual) : 0.0;
  res_.steps = st_.step;
  res_.fp8_simulated = fp8_simulated();
  res_.fp8_real_gemms = fp8_ && fp8_->real_gemms();
  if (quant_) {
    res_.gemm_bits = quant_->mean_bits();
    res_.low_bit_flops_share = quant_->flops_share_at_most(4.5);
    res_.promotions = int64_t(quant_->promotions().size());
  } else {
    res_.gemm_bits = prec_.compute == DType::fp32 ? 32 : prec_.fp8 ? fp8_gemm_bits() : 16;
  }
  res_.quantization_simulated = fp8_simulated() || quant_;
  res_.peak_gflops = peak_;
  res_.peak_how = peak_how_;
  res_.tokens_per_s = time_sum_ > 0 ? tok_sum_ / time_sum_ : 0;
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  res_.peak_rss_mib = double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

Trainer::Trainer(const TrainConfig& cfg, Mesh& mesh, std::ostream& out, const std::string& resume_dir,
                 bool overwrite)
    : impl_(std::make_unique<Impl>(cfg, mesh, out, resume_dir, overwrite)) {}
Trainer::~Trainer() = default;
TrainResult Trainer::train() { return impl_->train(); }

TrainResult train(const TrainConfig& cfg, const std::string& resume_dir, std::ostream& out, bool overwrite,
                  Mesh* mesh_in) {
  cfg.validate();
  // The layout: the given mesh, or one rank on its own.
  std::unique_ptr<Communicator> self_world;
  std::unique_ptr<Mesh> self_mesh;
  if (!mesh_in) {
    self_world = make_self_communicator();
    self_mesh = std::make_unique<Mesh>(*self_world, MeshShape{});
  }
  Mesh& mesh = mesh_in ? *mesh_in : *self_mesh;
  MESHLM_CHECK(mesh.shape().dp == cfg.dp && mesh.shape().tp == cfg.tp && mesh.shape().pp == cfg.pp,
               "the config asks for dp " + std::to_string(cfg.dp) + " x tp " + std::to_string(cfg.tp) + " x pp " +
                   std::to_string(cfg.pp) + " but the job's mesh is " + mesh.shape().describe());
  MESHLM_CHECK(!cfg.data.empty(), "--data: no data directory given (run `meshlm prepare` first)");
  check_memory_fits(cfg, mesh.rank(), mesh.pp_rank());  // before the first allocation
  return Trainer(cfg, mesh, out, resume_dir, overwrite).train();
}

}  // namespace meshlm
