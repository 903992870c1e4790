#include "train/trainer.h"

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>

#include "backend/profiling.h"
#include "core/error.h"
#include "data/loader.h"
#include "model/model.h"
#include "precision/fp8_recipe.h"
#include "optim/adamw.h"
#include "parallel/data_parallel.h"
#include "precision/numerics.h"
#include "precision/policy.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/metrics.h"
#include "train/pipeline_executor.h"

namespace meshlm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Set by SIGINT/SIGTERM. A signal handler can only reach process state; this flag is the one
// piece of it, read once per step by the loop that installed the handler.
volatile std::sig_atomic_t g_stop_requested = 0;
void on_stop_signal(int) { g_stop_requested = 1; }

// SIGUSR1 too: OpenMPI's mpirun forwards it to every rank, while its own SIGINT/SIGTERM
// handling ends the job at once (`kill -USR1 <mpirun pid>` stops a job with a checkpoint).
struct SignalGuard {
  void (*old_int)(int), (*old_term)(int), (*old_usr1)(int);
  SignalGuard() {
    g_stop_requested = 0;
    old_int = std::signal(SIGINT, on_stop_signal);
    old_term = std::signal(SIGTERM, on_stop_signal);
    old_usr1 = std::signal(SIGUSR1, on_stop_signal);
  }
  ~SignalGuard() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
    std::signal(SIGUSR1, old_usr1);
  }
};

// Resident memory of this process now, in MiB (from /proc/self/statm).
double current_rss_mib() {
  std::ifstream statm("/proc/self/statm");
  double pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * double(::sysconf(_SC_PAGESIZE)) / double(1 << 20);
}

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
nlohmann::json precision_state(const Precision& prec, const Fp8Recipe* fp8, const LossScaler& scaler) {
  nlohmann::json j = {{"mode", prec.mode}};
  if (prec.dynamic_scaling) j["loss_scaler"] = scaler.to_json();
  if (fp8) j["fp8"] = fp8->state();
  return j;
}

// Restores that state when the mode has it; a checkpoint of another mode starts this mode
// fresh (weights are stored as fp32 masters, so any mode can start from any checkpoint).
void restore_precision_state(const nlohmann::json& trainer, const Precision& prec, Fp8Recipe* fp8,
                             LossScaler& scaler, std::ostream& out) {
  const nlohmann::json p = trainer.value("precision", nlohmann::json::object());
  const std::string saved = p.value("mode", std::string("fp32"));
  if (saved != prec.mode)
    out << "precision: the checkpoint was trained in " << saved << ", continuing in " << prec.mode << "\n";
  if (prec.dynamic_scaling && p.contains("loss_scaler")) scaler.from_json(p["loss_scaler"]);
  if (fp8 && p.contains("fp8")) fp8->set_state(p["fp8"]);
}

// A model's master weights and Adam moments as host copies (the whole-tensor assembly of
// checkpoints happens on the host; the backend downloads and uploads).
struct HostState {
  std::vector<float> p, m, v;
};
HostState download_state(const Model& model, const AdamW& opt) {
  Backend& be = model.backend();
  HostState h{std::vector<float>(size_t(model.params().numel())), std::vector<float>(size_t(opt.m().numel())),
              std::vector<float>(size_t(opt.v().numel()))};
  be.download(h.p.data(), model.params().data(), model.params().nbytes());
  be.download(h.m.data(), opt.m().data(), opt.m().nbytes());
  be.download(h.v.data(), opt.v().data(), opt.v().nbytes());
  return h;
}
void upload_state(const HostState& h, Model& model, AdamW& opt) {
  Backend& be = model.backend();
  be.upload(model.params().data(), h.p.data(), model.params().nbytes());
  be.upload(opt.m().data(), h.m.data(), opt.m().nbytes());
  be.upload(opt.v().data(), h.v.data(), opt.v().nbytes());
}

// Tensor parallelism and checkpoints, which hold whole tensors: a rank's parameters and Adam
// moments are its slices of the whole ones through the sharding plan (ParamEntry::global_index).
// to_whole gathers the slices of the tp group into a whole model; from_whole takes them out.
void to_whole(const Model& local, const AdamW& lopt, Model& whole, AdamW& wopt, Communicator& tp) {
  std::vector<float> buf;
  const HostState l = download_state(local, lopt);
  HostState w = download_state(whole, wopt);
  const std::pair<const float*, float*> pairs[] = {
      {l.p.data(), w.p.data()}, {l.m.data(), w.m.data()}, {l.v.data(), w.v.data()}};
  for (const ParamEntry& e : local.table().entries()) {
    const int64_t base = whole.table().at(e.name).offset, n = e.numel();
    for (const auto& [src, dst] : pairs) {
      if (e.shard == Sharding::replicated) {
        std::memcpy(dst + base, src + e.offset, size_t(n) * 4);
        continue;
      }
      buf.resize(size_t(n) * size_t(tp.size()));
      tp.all_gather(src + e.offset, buf.data(), std::vector<int64_t>(size_t(tp.size()), n), DType::fp32);
      for (int r = 0; r < tp.size(); r++) {
        ParamEntry er = e;  // rank r's part of the same parameter
        er.tp_rank = r;
        for (int64_t i = 0; i < n; i++) dst[base + er.global_index(i)] = buf[size_t(r) * size_t(n) + size_t(i)];
      }
    }
  }
  upload_state(w, whole, wopt);
}

// Pipeline parallelism: each stage's whole tensors (after to_whole) go to pipeline rank 0,
// which assembles the whole model by name (the tied wte comes from the first stage; the last
// stage's copy is identical). Only the ranks at tp 0, dp 0 take part (the pp group of rank 0).
constexpr int kCheckpointTag = 32001;  // beside the pipeline executor's tags (all below 32768)
constexpr int kNumericsTag = 32002;
void gather_stages(const Model& stage_whole, const AdamW& stage_opt, Model* whole, AdamW* wopt, Communicator& pp,
                   const ModelConfig& mcfg, const Plan& whole_stages) {
  const HostState mine = download_state(stage_whole, stage_opt);
  const std::vector<float>* src[] = {&mine.p, &mine.m, &mine.v};
  if (pp.rank() != 0) {
    for (const auto* t : src) pp.send(t->data(), int64_t(t->size()), DType::fp32, 0, kCheckpointTag);
    return;
  }
  HostState all = download_state(*whole, *wopt);
  float* dst[] = {all.p.data(), all.m.data(), all.v.data()};
  for (int s = pp.size() - 1; s >= 0; s--) {  // the first stage last: its wte is the one kept
    const ParamTable table = param_table(mcfg, whole_stages, s, 0);
    for (int k = 0; k < 3; k++) {
      std::vector<float> buf;
      const float* data = src[k]->data();
      if (s > 0) {
        buf.resize(size_t(table.total()));
        pp.recv(buf.data(), table.total(), DType::fp32, s, kCheckpointTag);
        data = buf.data();
      }
      for (const ParamEntry& e : table.entries())
        std::memcpy(dst[k] + whole->table().at(e.name).offset, data + e.offset, size_t(e.numel()) * 4);
    }
  }
  upload_state(all, *whole, *wopt);
}

// The numerics report of a pipeline: each stage's entries (numerics_layers x 3 kinds, 6 numbers
// each) go to pipeline rank 0, which knows every stage's layers from the split. Only the ranks
// at tp 0, dp 0 take part. Returns the whole model's entries on rank 0.
std::vector<NumericsEntry> gather_numerics(const Model& stage, Communicator& pp, const std::vector<int64_t>& split) {
  auto pack = [](const std::vector<NumericsEntry>& entries) {
    std::vector<double> v;
    for (const NumericsEntry& e : entries) {
      const TensorStats& t = e.stats;
      v.insert(v.end(), {double(t.n), double(t.zero), double(t.underflow), double(t.subnormal),
                         double(t.overflow), t.amax});
    }
    return v;
  };
  std::vector<NumericsEntry> mine = collect_numerics(stage);
  if (pp.rank() != 0) {
    const std::vector<double> v = pack(mine);
    pp.send(v.data(), int64_t(v.size()), DType::fp64, 0, kNumericsTag);
    return {};
  }
  for (int s = 1; s < pp.size(); s++) {
    std::vector<NumericsEntry> theirs;
    for (const std::string& layer : numerics_layers(stage_layers(split, s)))
      for (const char* kind : {"weights", "activations", "grads"}) theirs.push_back({layer, kind, {}});
    std::vector<double> v(theirs.size() * 6);
    pp.recv(v.data(), int64_t(v.size()), DType::fp64, s, kNumericsTag);
    for (size_t i = 0; i < theirs.size(); i++) {
      TensorStats& t = theirs[i].stats;
      const double* x = &v[6 * i];
      t.n = int64_t(x[0]);
      t.zero = int64_t(x[1]);
      t.underflow = int64_t(x[2]);
      t.subnormal = int64_t(x[3]);
      t.overflow = int64_t(x[4]);
      t.amax = x[5];
    }
    mine.insert(mine.end(), theirs.begin(), theirs.end());
  }
  return mine;
}

void from_whole(const Model& whole, const AdamW& wopt, Model& local, AdamW& lopt) {
  const HostState w = download_state(whole, wopt);
  HostState l = download_state(local, lopt);
  const std::pair<const float*, float*> pairs[] = {
      {w.p.data(), l.p.data()}, {w.m.data(), l.m.data()}, {w.v.data(), l.v.data()}};
  for (const ParamEntry& e : local.table().entries()) {
    const int64_t base = whole.table().at(e.name).offset;
    for (const auto& [src, dst] : pairs)
      for (int64_t i = 0; i < e.numel(); i++) dst[e.offset + i] = src[base + e.global_index(i)];
  }
  upload_state(l, local, lopt);
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const std::string& resume_dir, std::ostream& out_all,
                  bool overwrite, Mesh* mesh_in) {
  cfg.validate();
  // The layout: the given mesh, or one rank on its own.
  std::unique_ptr<Communicator> self_world;
  std::unique_ptr<Mesh> self_mesh;
  if (!mesh_in) {
    self_world = make_self_communicator();
    self_mesh = std::make_unique<Mesh>(*self_world, MeshShape{});
  }
  Mesh& job_mesh = mesh_in ? *mesh_in : *self_mesh;
  MESHLM_CHECK(job_mesh.shape().dp == cfg.dp && job_mesh.shape().tp == cfg.tp && job_mesh.shape().pp == cfg.pp,
               "the config asks for dp " + std::to_string(cfg.dp) + " x tp " + std::to_string(cfg.tp) +
                   " x pp " + std::to_string(cfg.pp) + " but the job's mesh is " + job_mesh.shape().describe());
  const int dp = job_mesh.shape().dp, dp_rank = job_mesh.dp_rank();
  const bool lead = job_mesh.rank() == 0;  // prints, writes metrics and checkpoints
  std::ostream null_out(nullptr);
  std::ostream& out = lead ? out_all : null_out;
  MESHLM_CHECK(!cfg.data.empty(), "--data: no data directory given (run `meshlm prepare` first)");
  if (cfg.threads > 0) omp_set_num_threads(int(cfg.threads));
  std::unique_ptr<Backend> backend = make_backend(cfg.backend);
  ProfilingBackend* profiler = nullptr;  // --profile: time every kernel call
  if (cfg.profile == 1) {
    auto p = make_profiling_backend(std::move(backend));
    profiler = p.get();
    backend = std::move(p);
  }
  // The collectives move tensor buffers: the mesh's groups as declared clients of the backend.
  Mesh mesh(job_mesh, *backend);
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
  const BatchPlan plan{dp, dp_rank, accum, mb};  // this rank's micro-batches of each global batch

  const Precision prec(cfg.precision, cfg.stochastic_rounding == 1, cfg.master_weights == 1,
                       cfg.loss_scale, uint64_t(cfg.seed));
  const int tp = mesh.shape().tp, pp = mesh.shape().pp;
  const Plan layout = cfg.plan();
  const std::vector<int64_t>& split = layout.pp_split;
  const StageLayers stage = layout.stage(mesh.pp_rank());
  Model model(mcfg, *backend, prec.compute, layout, &mesh.tp(), mesh.pp_rank());
  // The same stages unsharded (tp 1), for checkpoints that hold whole tensors.
  Plan whole_stages;
  whole_stages.mesh.pp = pp;
  whole_stages.pp_split = split;
  const PipelineSchedule schedule = pipeline_schedule_from_name(cfg.pp_schedule);
  std::unique_ptr<PipelineExecutor> pipeline;
  if (pp > 1) pipeline = std::make_unique<PipelineExecutor>(model, mesh.pp(), schedule, int(accum));
  // The tied embedding / LM head: the first and the last stage each hold wte and sum its
  // gradient (mesh.tied()) before the data-parallel reduction may touch it.
  const bool tied_copy = pp > 1 && (stage.first || stage.last);
  // Its gradient is [0, tied_end) of the flat buffer: the tied sum and the buckets rely on it.
  const int64_t tied_end = tied_copy ? model.table().at("transformer.wte.weight").numel() : 0;
  MESHLM_CHECK(!tied_copy || model.table().at("transformer.wte.weight").offset == 0,
               "pipeline: the tied embedding must lead the parameter table");
  std::unique_ptr<Fp8Recipe> fp8;
  if (prec.fp8) fp8 = std::make_unique<Fp8Recipe>(model, cfg.fp8_scaling());
  const int64_t P = model.table().total();
  // ZeRO-1: this rank's AdamW owns a slice of the moments; otherwise all of them.
  const Zero1Shard shard = cfg.zero ? Zero1Shard::of(P, dp_rank, dp) : Zero1Shard{0, P};
  AdamW opt(*backend, model.table(), DType::fp32, cfg.adamw(), shard.begin, shard.end);
  LossScaler scaler(cfg.loss_scaler());
  TrainerState st;
  st.rng = {uint64_t(cfg.seed), 0};
  if (!resume_dir.empty()) {
    // Optimizer state is stored with global offsets (whole, or per-rank slices): each rank
    // reads the part in its own range, so any layout resumes any checkpoint.
    nlohmann::json trainer;
    if (tp == 1 && pp == 1) {
      trainer = load_checkpoint(resume_dir, model, &opt);
    } else {  // whole tensors in the checkpoint: load them whole, keep this rank's slices
      Model whole(mcfg, *backend, DType::fp32);
      AdamW wopt(*backend, whole.table(), DType::fp32, cfg.adamw());
      trainer = load_checkpoint(resume_dir, whole, &wopt);
      AdamW local(*backend, model.table(), DType::fp32, cfg.adamw());  // all of this tp rank's moments
      from_whole(whole, wopt, model, local);
      backend->copy(opt.m().data(), local.m().as<float>() + shard.begin, size_t(shard.size()) * 4);
      backend->copy(opt.v().data(), local.v().as<float>() + shard.begin, size_t(shard.size()) * 4);
    }
    st.step = trainer.at("step").get<int64_t>();
    st.loader.sequences = trainer.at("loader").at("sequences").get<int64_t>();
    st.rng = {trainer["rng"]["seed"].get<uint64_t>(), trainer["rng"]["counter"].get<uint64_t>()};
    restore_precision_state(trainer, prec, fp8.get(), scaler, out);
    out << "resumed from " << resume_dir << " at step " << st.step << "\n";
  } else {
    model.init(uint64_t(cfg.seed));
  }
  // A checkpoint (or init) of another mode starts this one: make the state this mode's.
  if (prec.fp16_pure) {
    backend->round_to_format(DType::fp16, model.params().as<float>(), model.params().numel());
    backend->round_to_format(DType::fp16, opt.m().as<float>(), opt.m().numel());
    backend->round_to_format(DType::fp16, opt.v().as<float>(), opt.v().numel());
  }
  if (!prec.master_weights) {
    model.update_compute_weights(prec.rounding(st.step));
    model.master_from_compute_weights();
  }
  model.update_compute_weights(prec.rounding(st.step));

  std::optional<MetricsLog> metrics;  // rank 0's
  if (lead) {
    if (resume_dir.empty())
      prepare_fresh_run_dir(cfg.out, overwrite);
    else
      truncate_metrics_after(fs::path(cfg.out) / "metrics.jsonl", st.step);
    fs::create_directories(cfg.out);
    metrics.emplace((fs::path(cfg.out) / "metrics.jsonl").string(), !resume_dir.empty());
  }
  auto write_metrics = [&](const nlohmann::ordered_json& line) {
    if (metrics) metrics->write(line);
  };
  // Gradient reduction across the data-parallel ranks.
  const int64_t bucket_elems = std::max<int64_t>(1, int64_t(cfg.bucket_mb * 1e6 / 4));
  std::unique_ptr<GradientBuckets> buckets;
  if (dp > 1 && !cfg.zero)
    buckets = std::make_unique<GradientBuckets>(mesh.dp(), *backend, P, bucket_elems, dtype_from_name(cfg.grad_reduce));
  Tensor grad_shard({cfg.zero && dp > 1 ? shard.size() : 0}, DType::fp32, *backend);
  const DType peak_dtype = backend->supports(Op::gemm, prec.compute) ? prec.compute : DType::fp32;
  const double peak = cfg.peak_gflops > 0 ? cfg.peak_gflops : measure_peak_gflops(*backend, peak_dtype);
  const double flops_per_step = mcfg.flops_per_token(T) * double(cfg.batch_size * T);
  // MFU: the global batch's model FLOPs against the peak of every rank together.
  const double peak_all = peak * double(mesh.world().size());
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
  if (mesh.world().size() > 1) {
    // Bytes per parameter of THIS rank's part (P local elements of the model's total).
    const double mib = 1.0 / (1 << 20), p = double(P), total = double(mcfg.num_parameters());
    const double weights = p * 4 + (prec.compute != DType::fp32 ? p * 2 : 0), grads = p * 4;
    const double moments = double(shard.size()) * 8;
    std::string reduce = "no gradient reduction (dp 1)";
    if (cfg.zero && dp > 1) reduce = "ZeRO-1: Adam moments sharded, gradients reduce-scattered";
    else if (buckets)
      reduce = std::to_string(buckets->count()) + " gradient buckets of " + fmt("%g", cfg.bucket_mb) + " MB, " +
               cfg.grad_reduce + (cfg.overlap ? ", overlapped with backward" : ", after backward");
    out << "layout  " << mesh.shape().describe() << " (" << mesh.world().kind() << "), " << reduce;
    if (tp > 1)
      out << "; tensor parallel" << (cfg.sequence_parallel ? " + sequence parallel" : "") << ": "
          << fmt("%.1f", 100.0 * p / total) << "% of the parameters per rank";
    if (pp > 1) {
      std::string layers;
      for (int64_t n : split) layers += (layers.empty() ? "" : ",") + std::to_string(n);
      out << "; pipeline " << pipeline_schedule_name(schedule) << ", " << accum << " micro-batch"
          << (accum > 1 ? "es" : "") << ", layers " << layers << " per stage";
      if (accum < 2 * pp)
        out << "\nnote    " << accum << " micro-batch" << (accum > 1 ? "es" : "") << " for " << pp
            << " stages: each stage idles about " << fmt("%.0f", 100.0 * predicted_bubble(pp, int(accum)))
            << "% of a step; a smaller --micro-batch-size gives more micro-batches and a smaller bubble";
    }
    out << "\n"
        << "memory  per rank: weights " << fmt("%.1f", weights * mib) << " MiB (fp32 master"
        << (prec.compute != DType::fp32 ? " + 16-bit copy" : "") << "), grads " << fmt("%.1f", grads * mib)
        << " MiB, Adam moments " << fmt("%.1f", moments * mib) << " MiB = "
        << fmt("%.1f", (weights + grads + moments) / p) << " bytes/parameter held (formula: 4 + 4 + 8";
    if (cfg.zero) out << "/" << dp;
    out << (prec.compute != DType::fp32 ? " + 2" : "") << ")\n";
  }
  out.flush();

  const LrSchedule sched = cfg.schedule();
  TrainConfig saved_cfg = cfg;
  saved_cfg.tokenizer = tokenizer_file.empty() ? tokenizer_spec : "tokenizer.json";  // in the checkpoint
  const nlohmann::json cfg_json = saved_cfg.to_json();
  // On a terminal a live progress line follows the log. Not under an MPI launcher: OpenMPI
  // gives the ranks a pseudo-terminal even when mpirun's own output goes to a file.
  const bool tty = stdout_is_terminal() && !launched_by_mpi();
  SignalGuard signals;
  TrainResult res;
  std::vector<int32_t> x, y;
  double tok_sum = 0, time_sum = 0;
  std::vector<double> idle_sum(size_t(pp), 0.0);  // per stage, over the steps after the first
  const auto run_start = Clock::now();
  const int64_t first_step = st.step;

  // ZeRO-1 with a 16-bit compute copy leaves each rank's masters outside its slice stale;
  // a checkpoint or a numerics report of the weights needs them whole.
  bool masters_stale = false;
  auto gather_masters = [&] {
    if (!masters_stale) return;
    mesh.dp().all_gather(model.params().as<float>() + shard.begin, model.params().as<float>(),
                         zero1_counts(P, dp), DType::fp32);
    masters_stale = false;
  };
  auto save = [&](const char* why) {
    gather_masters();
    const std::string dir = (fs::path(cfg.out) / checkpoint_dir_name(st.step)).string();
    st.precision = precision_state(prec, fp8.get(), scaler);
    // ZeRO-1: every rank writes its slice of the moments; tensor or pipeline parallel: the tp
    // group gathers whole tensors of its stage, the stages send theirs to rank 0; otherwise
    // rank 0 writes it all.
    if (tp > 1 || pp > 1) {
      // All of this tp rank's moments (gathered over dp under ZeRO-1), then whole tensors.
      std::unique_ptr<AdamW> local;
      if (cfg.zero && dp > 1) {
        local = std::make_unique<AdamW>(*backend, model.table(), DType::fp32, cfg.adamw());
        mesh.dp().all_gather(opt.m().data(), local->m().data(), zero1_counts(P, dp), DType::fp32);
        mesh.dp().all_gather(opt.v().data(), local->v().data(), zero1_counts(P, dp), DType::fp32);
      }
      Model whole(mcfg, *backend, DType::fp32, whole_stages, nullptr, mesh.pp_rank());  // this stage's whole tensors
      AdamW wopt(*backend, whole.table(), DType::fp32, cfg.adamw());
      to_whole(model, local ? *local : opt, whole, wopt, mesh.tp());
      if (pp > 1 && mesh.tp_rank() == 0 && dp_rank == 0) {
        std::unique_ptr<Model> all;  // rank 0: the whole model, from every stage
        std::unique_ptr<AdamW> all_opt;
        if (lead) {
          all = std::make_unique<Model>(mcfg, *backend, DType::fp32);
          all_opt = std::make_unique<AdamW>(*backend, all->table(), DType::fp32, cfg.adamw());
        }
        gather_stages(whole, wopt, all.get(), all_opt.get(), mesh.pp(), mcfg, whole_stages);
        if (lead) save_checkpoint(dir, *all, all_opt.get(), st, cfg_json, tokenizer_file);
      } else if (lead) {
        save_checkpoint(dir, whole, &wopt, st, cfg_json, tokenizer_file);
      }
    } else if (cfg.zero && dp > 1) {
      save_checkpoint(dir, model, &opt, st, cfg_json, tokenizer_file, &mesh.dp());
    } else if (lead) {
      save_checkpoint(dir, model, &opt, st, cfg_json, tokenizer_file);
    }
    res.checkpoint = dir;
    out << "saved   " << dir << " (" << why << ")\n";
  };
  double profiled_secs = 0;  // the timed steps' wall time (all but this run's first)
  double profiled_comm_secs = 0;  // their data-parallel communication not hidden by backward
  int64_t profiled_steps = 0;
  auto run_eval = [&]() {
    // One tensor-parallel group evaluates (dp rank 0: its forward has tp collectives); the
    // other ranks go on to the next step's collectives. Rank 0 reports.
    if (dp_rank != 0) return;
    if (profiler) profiler->set_enabled(false);
    // eval_batches global batches (batch_size sequences each) in chunks of the micro-batch:
    // the same sequences, so the same loss, at any dp and accumulation.
    const int64_t batches = cfg.eval_batches * (cfg.batch_size / mb);
    EvalResult v;
    if (pipeline) {  // through the stages; the last one's loss (the others report 0) to all
      v = evaluate([&](const int32_t* x, const int32_t* y, int64_t b, int64_t t) { return pipeline->forward_only(x, y, b, t); },
                   *val_data, batches, mb, T, tokenizer ? &*tokenizer : nullptr);
      double both[2] = {v.loss, v.loss_per_byte};
      mesh.pp().all_reduce(both, 2, DType::fp64, ReduceOp::max);
      v.loss = both[0];
      v.loss_per_byte = both[1];
    } else {
      v = evaluate(model, *val_data, batches, mb, T, tokenizer ? &*tokenizer : nullptr);
    }
    res.val_loss = v.loss;
    res.val_loss_per_byte = v.loss_per_byte;
    nlohmann::ordered_json line = {{"step", st.step}, {"val_loss", v.loss}};
    if (v.loss_per_byte >= 0) line["val_loss_per_byte"] = v.loss_per_byte;
    write_metrics(line);
    if (profiler) profiler->set_enabled(true);
    out << "eval    step " << st.step << " | val_loss " << fmt("%.4f", v.loss) << " nats/token";
    if (v.loss_per_byte >= 0) out << ", " << fmt("%.4f", v.loss_per_byte) << " nats/byte";
    out << "\n";
  };

  std::unique_ptr<NumericsReport> numerics;
  if (cfg.numerics_report > 0 && lead)
    numerics = std::make_unique<NumericsReport>((fs::path(cfg.out) / "numerics.jsonl").string(),
                                                !resume_dir.empty(), st.step);
  while (st.step < cfg.steps) {
    const auto t0 = Clock::now();
    model.zero_grad();
    // The loss is multiplied by the loss scale before backward (fp16), so the gradients hold
    // scale * gradient until the optimizer divides it back out.
    const double scale = prec.dynamic_scaling ? scaler.scale() : prec.static_scale;
    double loss = 0;
    float* grads = model.grads().as<float>();
    // The testing aid: an inf planted in dp rank 0's gradient before it is reduced.
    auto plant = [&] {
      const float inf = INFINITY;
      if (cfg.inject_inf_at_step == st.step + 1 && dp_rank == 0) backend->upload(grads, &inf, sizeof inf);
    };
    const bool overlapped = buckets && cfg.overlap;
    if (buckets) buckets->start(grads);
    double step_times[2] = {0, 0};  // pipeline: this stage's busy and total seconds of the schedule
    // Backward's hook on the last micro-batch: reduce buckets as they finish, except the tied
    // embedding's, which the stages sum first.
    struct OverlapHooks final : UnitHooks {
      std::function<void(int64_t)> f;
      void grads_final_from(int64_t offset) override { f(offset); }
    } on_ready;
    on_ready.f = [&](int64_t offset) {
      if (offset == 0) plant();
      buckets->ready_from(std::max(offset, tied_end));
    };
    if (pipeline) {  // the micro-batches through the stages, by the schedule
      std::vector<std::vector<int32_t>> xs(static_cast<size_t>(accum)), ys(static_cast<size_t>(accum));
      std::vector<const int32_t*> xp, yp;
      for (int64_t k = 0; k < accum; k++) {
        train_data.read(plan.first(st.loader.sequences, k), mb, xs[size_t(k)], ys[size_t(k)]);
        xp.push_back(xs[size_t(k)].data());
        yp.push_back(ys[size_t(k)].data());
      }
      loss = pipeline->step(xp, yp, mb, T, float(scale / double(accum * dp)), overlapped ? &on_ready : nullptr) /
             double(accum);
      mesh.pp().all_reduce(&loss, 1, DType::fp64);  // the last stage's
      step_times[0] = pipeline->times().busy_s;
      step_times[1] = pipeline->times().total_s;
    }
    for (int64_t k = 0; k < (pipeline ? 0 : accum); k++) {
      train_data.read(plan.first(st.loader.sequences, k), mb, x, y);
      // Each rank's mean over its micro-batch, scaled so the sum over micro-batches and ranks
      // is the mean over the global batch (times the loss scale).
      loss += model.forward(x.data(), y.data(), mb, T, float(scale / double(accum * dp))) / double(accum);
      // the last micro-batch: reduce buckets as they finish
      model.set_hooks(overlapped && k == accum - 1 ? &on_ready : nullptr);
      model.backward();
      model.set_hooks(nullptr);
    }
    if (!overlapped) plant();
    const auto comm_t0 = Clock::now();  // communication left after backward, for the profile
    if (tied_copy) mesh.tied().all_reduce(grads, tied_end, DType::fp32);  // wte is at offset 0
    if (buckets) {
      buckets->finish();  // grads: the sum over the dp ranks
    } else if (cfg.zero && dp > 1) {  // ZeRO-1: each rank receives the sum of its own slice
      mesh.dp().reduce_scatter(grads, grad_shard.data(), zero1_counts(P, dp), DType::fp32);
      backend->copy(grads + shard.begin, grad_shard.data(), grad_shard.nbytes());
    }
    if (dp > 1) {
      mesh.dp().all_reduce(&loss, 1, DType::fp64);
      loss /= double(dp);
    }
    double comm_secs = std::chrono::duration<double>(Clock::now() - comm_t0).count();
    if (prec.fp16_pure) backend->round_to_format(DType::fp16, grads + shard.begin, shard.size());
    // One number decides overflow, clipping and the norm on every rank: the sum of squares of
    // the whole reduced gradient (inf/NaN iff any element is), reduced across the dp ranks
    // (ZeRO-1: the shards' sums add up; otherwise every rank holds it all and max agrees).
    double sumsq = 0;
    if (tp == 1 && pp == 1) {
      sumsq = backend->sum_squares(DType::fp32, grads + shard.begin, shard.size());
    } else {  // each tp rank's own slices, plus the replicated parameters counted once (rank 0);
              // under ZeRO-1 only the part of each inside this rank's reduced slice; each
              // stage its own layers, the tied wte counted on the first stage only
      for (const ParamEntry& e : model.table().entries()) {
        const int64_t lo = std::max(e.offset, shard.begin), hi = std::min(e.offset + e.numel(), shard.end);
        const bool counted = (e.shard != Sharding::replicated || mesh.tp_rank() == 0) &&
                             !(tied_copy && !stage.first && e.offset < tied_end);
        if (lo < hi && counted) sumsq += backend->sum_squares(DType::fp32, grads + lo, hi - lo);
      }
      if (tp > 1) mesh.tp().all_reduce(&sumsq, 1, DType::fp64);
      if (pp > 1) mesh.pp().all_reduce(&sumsq, 1, DType::fp64);
    }
    if (dp > 1) mesh.dp().all_reduce(&sumsq, 1, DType::fp64, cfg.zero ? ReduceOp::sum : ReduceOp::max);
    const bool overflow = !std::isfinite(sumsq);
    const double norm = std::sqrt(sumsq) / scale;
    const bool write_numerics = cfg.numerics_report > 0 && (st.step + 1) % cfg.numerics_report == 0;
    if (write_numerics) gather_masters();  // a collective: every rank takes part
    if (write_numerics && pipeline && mesh.tp_rank() == 0 && dp_rank == 0) {
      const std::vector<NumericsEntry> all = gather_numerics(model, mesh.pp(), split);
      if (numerics) numerics->write(st.step + 1, all, prec.compute, scale);
    } else if (write_numerics && numerics) {
      numerics->write(st.step + 1, model, scale);
    }
    bool skipped = false;
    if (prec.dynamic_scaling) {
      skipped = !scaler.update(overflow);  // throws below the minimum scale
    }
    const double lr = sched.at(st.step);
    if (!skipped) {
      const float clip = clip_factor(norm, cfg.grad_clip);
      opt.step(model.params(), model.grads(), float(lr), float(clip / scale),
               st.step + 1 - scaler.skipped_steps(), prec.fp16_pure);
      // ZeRO-1: every rank updated its slice of the masters; the ranks exchange the updated
      // weights in the compute dtype: the fp32 masters in fp32 mode, else each rank rounds its
      // slice to the 16-bit copy and they exchange that (half the bytes), leaving the masters
      // outside a rank's slice stale until gather_masters().
      const auto gather_t0 = Clock::now();
      if (cfg.zero && dp > 1 && prec.compute != DType::fp32) {
        model.update_compute_weights(prec.rounding(st.step + 1), shard.begin, shard.end);
        auto* w = static_cast<uint16_t*>(model.compute_weights().data());
        mesh.dp().all_gather(w + shard.begin, w, zero1_counts(P, dp), prec.compute);
        masters_stale = true;
      } else {
        if (cfg.zero && dp > 1)
          mesh.dp().all_gather(model.params().as<float>() + shard.begin, model.params().as<float>(),
                               zero1_counts(P, dp), DType::fp32);
        model.update_compute_weights(prec.rounding(st.step + 1));
      }
      if (cfg.zero && dp > 1) comm_secs += std::chrono::duration<double>(Clock::now() - gather_t0).count();
      if (!prec.master_weights) {  // the weights are the bf16 values: whole again everywhere
        model.master_from_compute_weights();
        masters_stale = false;
      }
    }
    if (fp8) {
      if (mesh.world().size() > 1) {  // the same scales everywhere: the max over ranks (and tp slices)
        std::vector<float> amax = fp8->step_amaxes();
        mesh.world().all_reduce(amax.data(), int64_t(amax.size()), DType::fp32, ReduceOp::max);
        fp8->set_step_amaxes(amax);
      }
      fp8->end_step();
    }
    st.step++;
    st.loader.sequences += plan.global_batch();
    st.epoch = st.loader.sequences / train_data.windows_per_epoch();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tps = double(cfg.batch_size * T) / secs;
    const double mfu = flops_per_step / secs / (peak_all * 1e9);
    tok_sum += double(cfg.batch_size * T);
    time_sum += secs;
    if (st.step == first_step + 1) {  // allocated by the first forward
      const double mib = 1.0 / double(1 << 20);
      res.activation_mib = double(model.activation_bytes()) * mib;
      res.saved_activation_mib = double(model.saved_activation_bytes()) * mib;
      if (mesh.world().size() > 1 || model.recompute() != Recompute::none)
        out << "memory  activations per rank: " << fmt("%.1f", res.activation_mib) << " MiB (recompute "
            << recompute_name(model.recompute()) << ": " << model.slots() << " micro-batch"
            << (model.slots() > 1 ? "es" : "") << " in flight x " << fmt("%.2f", res.saved_activation_mib)
            << " MiB saved + " << fmt("%.2f", res.activation_mib - model.slots() * res.saved_activation_mib)
            << " MiB scratch)\n";
    }
    // Pipeline bubble: each stage's idle share of the pipeline's schedule (the longest stage's
    // span: a stage that finishes early waits for the rest at the next collective).
    std::vector<double> idle(size_t(pp), 0.0);
    if (pipeline) {
      std::vector<double> times(size_t(2 * pp));
      mesh.pp().all_gather(step_times, times.data(), std::vector<int64_t>(size_t(pp), 2), DType::fp64);
      double span = 0;
      for (int k = 0; k < pp; k++) span = std::max(span, times[size_t(2 * k + 1)]);
      for (int k = 0; k < pp; k++) idle[size_t(k)] = span > 0 ? 1.0 - times[size_t(2 * k)] / span : 0.0;
      if (st.step > first_step + 1)  // the first step warms up (GEMM JIT, fresh memory)
        for (int k = 0; k < pp; k++) idle_sum[size_t(k)] += idle[size_t(k)];
    }
    if (profiler && st.step == first_step + 1) {
      profiler->reset();  // the first step JIT-compiles GEMMs and touches fresh memory
    } else if (profiler) {
      profiled_secs += secs;
      profiled_comm_secs += comm_secs;
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
    line["rss_mib"] = current_rss_mib();  // this rank's resident memory now (rank 0's line)
    if (pipeline) line["pp_idle"] = idle;  // per stage, fraction of the step
    if (tp > 1) {  // tensor-parallel all-reduce payload of this step (formula: ((16 L + 8) N C + 12 N) bytes x accum)
      line["tp_mib"] = double(model.tp_bytes()) / double(1 << 20);
      model.reset_tp_bytes();
    }
    if (buckets) {
      line["comm_wait_ms"] = buckets->exposed_seconds() * 1e3;  // reduction not hidden by backward
      buckets->reset_timer();
    }
    write_metrics(line);
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
        << (prec.fp8 ? " (fp8 simulated)" : "")
        << (pipeline ? " | idle " + fmt("%.0f", 100.0 * *std::max_element(idle.begin(), idle.end())) + "%" : "")
        << "\n";
    out.flush();
    const bool last = st.step == cfg.steps;
    if (val_data && ((cfg.eval_every > 0 && st.step % cfg.eval_every == 0) || last)) run_eval();
    double stop = g_stop_requested ? 1.0 : 0.0;  // every rank stops at the same step
    if (mesh.world().size() > 1) mesh.world().all_reduce(&stop, 1, DType::fp64, ReduceOp::max);
    if (stop > 0) {
      out << "interrupted at step " << st.step << (cfg.checkpoints ? "; saving a checkpoint\n" : "\n");
      if (cfg.checkpoints) save("interrupted");
      res.interrupted = true;
      break;
    }
    if (!cfg.checkpoints) {
    } else if (last) {
      save("end of run");
    } else if (cfg.save_every > 0 && st.step % cfg.save_every == 0) {
      save("save_every");
    }
    if (tty && !last) {  // the live progress line, erased before the next line is printed
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta = elapsed / double(st.step - first_step) * double(cfg.steps - st.step);
      out << progress_bar(st.step, cfg.steps, eta) << std::flush;
    }
  }
  if (profiler && profiled_steps > 0) {
    out << "profile (" << profiled_steps << " steps after the first; per step)\n";
    std::map<std::string, double> extra;
    if (dp > 1) extra["communication (exposed)"] = profiled_comm_secs;
    profiler->print(out, profiled_secs, profiled_steps, extra);
  }
  if (pipeline && st.step - first_step > 1) {
    const double n = double(st.step - first_step - 1);
    out << "pipeline idle per stage (mean of " << (st.step - first_step - 1) << " steps after the first):";
    for (int k = 0; k < pp; k++) {
      res.pp_idle.push_back(idle_sum[size_t(k)] / n);
      out << (k ? ", " : " ") << "stage " << k << " " << fmt("%.1f", 100.0 * res.pp_idle.back()) << "%";
    }
    out << "; predicted " << fmt("%.1f", 100.0 * predicted_bubble(pp, int(accum))) << "% = (pp - 1) / (m + pp - 1)\n";
  }
  res.pp_idle_predicted = pipeline ? predicted_bubble(pp, int(accum)) : 0.0;
  res.steps = st.step;
  res.fp8_simulated = prec.fp8;
  res.peak_gflops = peak;
  if (profiler && profiled_steps > 0) {
    double inside = 0;
    for (const auto& [name, t] : profiler->times()) {
      res.kernel_ms[name] = t.seconds / double(profiled_steps) * 1e3;
      inside += t.seconds;
    }
    if (dp > 1) res.kernel_ms["communication (exposed)"] = profiled_comm_secs / double(profiled_steps) * 1e3;
    res.kernel_ms["(outside kernels)"] =
        (profiled_secs - inside - (dp > 1 ? profiled_comm_secs : 0)) / double(profiled_steps) * 1e3;
  }
  res.tokens_per_s = time_sum > 0 ? tok_sum / time_sum : 0;
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  res.peak_rss_mib = double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
  return res;
}

}  // namespace meshlm
