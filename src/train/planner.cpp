#include "train/planner.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <limits>
#include <map>

#include "core/error.h"
#include "model/model.h"
#include "parallel/pipeline.h"
#include "train/bench.h"
#include "train/memory_estimate.h"

namespace meshlm {

namespace {

bool is_attention_core(const Cost& c) { return c.what.rfind("attention", 0) == 0; }

// Seconds of one cost record's work on this machine (tp collectives over `tp` ranks).
double work_seconds(const Cost& c, const MachineProfile& m, int tp) {
  switch (c.kind) {
    case Cost::Kind::gemm:
      if (is_attention_core(c)) return c.flops() / (m.attention_gflops(c.dt, double(c.n), double(c.k)) * 1e9);
      MESHLM_CHECK(c.rows > 0, "planner: a GEMM record that is neither a Linear's nor attention's: " + c.what);
      return c.flops() / (m.matmul_gflops(c.dt, c.backward, c.out_in, double(c.rows), double(c.in), double(c.out)) * 1e9);
    case Cost::Kind::memory:
      if (c.what == "cross-entropy") {  // the fused softmax and its gradient, per logit
        auto it = m.crossentropy_ns.find(dtype_name(c.dt));
        if (it != m.crossentropy_ns.end()) return double(c.bytes) / double(2 * dtype_size(c.dt)) * it->second * 1e-9;
      }
      return double(c.bytes) / (m.memory_gbs * 1e9);
    case Cost::Kind::collective: return m.collective_seconds(c.collective, tp, double(c.bytes));
    case Cost::Kind::saved: return 0;
  }
  return 0;
}

// Its work plus the fixed cost of the kernel call (a Linear's product, a memory-bound kernel;
// a Linear's backward is one call for its two products, charged on the input gradient).
double record_seconds(const Cost& c, const MachineProfile& m, int tp) {
  double call = 0;
  if (c.kind == Cost::Kind::gemm && c.rows > 0 && c.what.find("weight gradient") == std::string::npos) call = m.matmul_call_s;
  if (c.kind == Cost::Kind::gemm && c.rows == 0) call = m.kernel_call_s / (c.backward ? 4 : 2);  // attention: one call per direction
  if (c.kind == Cost::Kind::memory) call = m.kernel_call_s;
  return call + work_seconds(c, m, tp);
}

// One micro-batch through one stage: forward + backward seconds (with what recompute reruns),
// split into compute and tensor-parallel communication, and per model chunk into its forward and
// its backward (what the pipeline simulation runs).
struct StageTime {
  double compute = 0, tp = 0;
  std::vector<double> fwd, bwd;         // per chunk, seconds per micro-batch
  std::map<std::string, double> kinds;  // per micro-batch
  double total() const { return compute + tp; }
};
std::string kind_of(const Cost& c) {
  const char* dir = c.backward ? ".backward" : ".forward";
  switch (c.kind) {
    case Cost::Kind::gemm: return std::string(is_attention_core(c) ? "attention" : "matmul") + dir;
    case Cost::Kind::memory: return "memory-bound";
    case Cost::Kind::collective: return "tp comm";
    case Cost::Kind::saved: break;
  }
  return "";
}
StageTime stage_time(const TrainConfig& cfg, const Plan& plan, int stage, DType dt, const MachineProfile& m) {
  StageTime t;
  t.fwd.assign(size_t(plan.pp_virtual), 0.0);
  t.bwd.assign(size_t(plan.pp_virtual), 0.0);
  const Recompute rc = plan.recompute;
  const StageLayers layers = plan.stage(stage);
  // the trainer outside the kernels: per micro-batch (a third forward), per block (likewise)
  auto overhead = [&](size_t chunk, double s) {
    t.compute += s;
    t.fwd[chunk] += s / 3;
    t.bwd[chunk] += 2 * s / 3;
    t.kinds["outside kernels"] += s;
  };
  overhead(0, m.micro_batch_s);
  for (const UnitCost& u : unit_costs(cfg.model(), plan, stage, dt, cfg.micro_batch(), cfg.seq_len)) {
    const bool block = is_block_unit(u.unit);
    const size_t chunk = block ? size_t(layers.chunk_of(std::stoll(u.unit.substr(2))))
                         : u.unit == "embedding" ? 0 : t.fwd.size() - 1;
    if (block) overhead(chunk, m.block_s);
    for (const Cost& c : u.ops) {
      const double s = record_seconds(c, m, plan.mesh.tp);
      // recomputation reruns in backward: a block's whole forward (full), or its attention
      // core and activation function (selective)
      const bool rerun = !c.backward && block &&
                         (rc == Recompute::full ||
                          (rc == Recompute::selective && (is_attention_core(c) || c.what.find("gelu") != std::string::npos ||
                                                          c.what.find("swiglu") != std::string::npos)));
      const double k = rerun ? 2.0 : 1.0;
      (c.kind == Cost::Kind::collective ? t.tp : t.compute) += k * s;
      (c.backward ? t.bwd : t.fwd)[chunk] += s;
      if (rerun) t.bwd[chunk] += s;
      if (c.kind != Cost::Kind::saved) t.kinds[kind_of(c)] += k * s;
    }
  }
  return t;
}

// The data-parallel collectives of one step, per rank, for P local parameters.
double dp_seconds(const TrainConfig& cfg, const Plan& plan, double P, DType dt, const MachineProfile& m) {
  const int dp = plan.mesh.dp;
  if (dp == 1) return 0;
  const double grad = P * double(dtype_size(plan.grad_reduce)), weights = P * double(dtype_size(dt));
  const double micro = double(cfg.accumulation_steps());
  const int st = plan.mesh.tp;  // a dp group's ranks are tp apart (parallel/mesh.h)
  switch (plan.zero_stage()) {
    case 0: return m.collective_seconds("all_reduce", dp, grad, st);
    case 1: return m.collective_seconds("reduce_scatter", dp, grad, st) + m.collective_seconds("all_gather", dp, weights, st);
    case 2:
      return (plan.hold_whole_grads ? 1.0 : micro) * m.collective_seconds("reduce_scatter", dp, grad, st) +
             m.collective_seconds("all_gather", dp, weights, st);
    default:
      return (plan.hold_whole_grads ? 1.0 : micro) * m.collective_seconds("reduce_scatter", dp, grad, st) +
             2.0 * micro * m.collective_seconds("all_gather", dp, weights, st);
  }
}

}  // namespace

std::string Prediction::layout() const {
  std::string s = std::to_string(cfg.dp) + "x" + std::to_string(cfg.tp) + "x" + std::to_string(cfg.pp) + " mb " +
                  std::to_string(cfg.micro_batch()) + " zero " + std::to_string(cfg.zero) + " rc " + cfg.recompute;
  if (cfg.sequence_parallel) s += " sp";
  if (cfg.pp > 1) s += " " + cfg.pp_schedule + (cfg.virtual_stages() > 1 ? "x" + std::to_string(cfg.virtual_stages()) : "");
  if (cfg.pp_layers == "balanced") s += " balanced";
  return s;
}

std::string Prediction::dominant() const {
  const std::pair<const char*, double> parts[] = {{"compute", compute_s}, {"tp comm", tp_s}, {"dp comm", dp_s},
                                                  {"pp bubble+sends", pp_s}, {"optimizer", optimizer_s}};
  std::vector<std::pair<double, std::string>> v;
  for (const auto& [name, s] : parts)
    if (s > 0) v.push_back({s, name});
  std::sort(v.rbegin(), v.rend());
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(2, v.size()); i++) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.0f%%", i ? ", " : "", v[i].second.c_str(), 100.0 * v[i].first / step_s);
    out += buf;
  }
  return out;
}

void predict_memory(const TrainConfig& cfg, Prediction& p) {
  for (int s : {0, int(cfg.pp) - 1}) {  // the most loaded: the first (most in flight) or the last (the LM head)
    const MemoryEstimate e = estimate_memory(cfg, s);
    if (s == 0) p.first_stage_bytes = e.total();
    if (e.total() > p.memory_bytes) p.memory_bytes = e.total(), p.activation_bytes = e.activations;
  }
}

Prediction predict_step(const TrainConfig& cfg, const MachineProfile& m) {
  Prediction p;
  p.cfg = cfg;
  const Plan plan = cfg.plan();
  const DType dt = cfg.precision == "fp32" ? DType::fp32 : DType::bf16;
  const int pp = plan.mesh.pp;
  const double micro = double(cfg.accumulation_steps());
  double slowest = 0, P_max = 0;
  PipeTimes pipe;  // per stage and chunk, for the schedule's simulation
  // Stages of the same shape (chunk sizes, ends held) cost the same: priced once (a deep
  // pipeline's middle stages). Memory depends on the stage's place in the schedule too.
  std::map<std::vector<int64_t>, std::pair<StageTime, double>> priced;
  for (int s = 0; s < pp; s++) {
    const StageLayers st = plan.stage(s);
    std::vector<int64_t> shape = {st.first, st.last};
    for (const LayerRange& r : st.resolved(cfg.n_layer)) shape.push_back(r.n);
    auto it = priced.find(shape);
    if (it == priced.end())
      it = priced.emplace(shape, std::make_pair(stage_time(cfg, plan, s, dt, m),
                                                double(param_table(cfg.model(), plan, s, 0).total()))).first;
    const StageTime& t = it->second.first;
    pipe.fwd.push_back(t.fwd);
    pipe.bwd.push_back(t.bwd);
    if (t.total() > slowest) {
      slowest = t.total();
      p.tp_s = t.tp;
      p.breakdown.clear();
      for (const auto& [k, v] : t.kinds) p.breakdown[k] = v * micro;
    }
    P_max = std::max(P_max, it->second.second);
  }
  predict_memory(cfg, p);
  p.compute_s = micro * (slowest - p.tp_s);
  p.tp_s *= micro;
  if (pp > 1) {  // the schedule run with these stage times: its bubble, the stages' imbalance, the sends
    const double boundary = double(cfg.micro_batch() * cfg.seq_len * cfg.n_embd) / (plan.sequence_parallel ? plan.mesh.tp : 1) *
                            double(dtype_size(dt));
    pipe.send = m.collective_seconds("send_recv", 2, boundary, plan.mesh.tp * plan.mesh.dp);
    const PipeSimulation sim = simulate_pipeline(plan.pp_schedule, pp, int(micro), plan.pp_virtual, pipe);
    p.pp_s = std::max(0.0, sim.makespan - micro * slowest);
    p.bubble = predicted_bubble(pp, int(micro), plan.pp_virtual);
  }
  p.dp_s = dp_seconds(cfg, plan, P_max, dt, m);
  const double shard = P_max / (plan.zero_stage() >= 1 ? plan.mesh.dp : 1);
  // AdamW over the shard; the 16-bit refresh (read 4, write 2), zeroing and the norm (4 each)
  p.optimizer_s = shard * m.adamw_ns * 1e-9 + (P_max * (dt == DType::fp32 ? 8.0 : 14.0)) / (m.memory_gbs * 1e9);
  p.optimizer_s += m.step_overhead_s;  // the step's own work outside the kernels (norms, metrics)
  p.step_s = p.compute_s + p.tp_s + p.dp_s + p.pp_s + p.optimizer_s;
  for (const auto& [k, v] : {std::pair<const char*, double>{"dp comm", p.dp_s}, {"pipeline", p.pp_s}, {"optimizer", p.optimizer_s}})
    if (v > 0) p.breakdown[k] = v;
  return p;
}

namespace {
// The schedules a pipeline of pp stages may run, with their model chunks per rank: 1F1B, GPipe,
// and interleaved 1F1B with each v for which the layers still give every virtual stage one.
std::vector<std::pair<std::string, int64_t>> schedules(int64_t n_layer, int pp) {
  if (pp == 1) return {{"1f1b", 0}};
  std::vector<std::pair<std::string, int64_t>> s = {{"1f1b", 0}, {"gpipe", 0}};
  for (int64_t v = 2; v <= 4 && pp * v <= n_layer; v++) s.push_back({"interleaved", v});
  return s;
}
}  // namespace

std::vector<Prediction> plan_layouts(const TrainConfig& base, int ranks, const MachineProfile& m, double memory_limit) {
  std::vector<Prediction> out;
  for (int tp = 1; tp <= ranks; tp++)
    for (int pp = 1; pp <= ranks / tp; pp++) {
      if (ranks % (tp * pp)) continue;
      const int dp = ranks / (tp * pp);
      if (base.batch_size % dp) continue;
      for (int64_t mb = 1; mb <= base.batch_size / dp; mb++) {
        if ((base.batch_size / dp) % mb) continue;
        for (const char* rc : {"none", "selective", "full"})
          for (int zero = 0; zero <= (dp > 1 ? 3 : 0); zero++)
            for (int sp = 0; sp <= (tp > 1 ? 1 : 0); sp++)
              for (const auto& [sched, v] : schedules(base.n_layer, pp))
                for (const char* split : {"", "balanced"}) {
                  if (pp == 1 && *split) continue;
                  TrainConfig c = base;
                  c.dp = dp, c.tp = tp, c.pp = pp, c.micro_batch_size = mb, c.recompute = rc, c.zero = zero;
                  c.sequence_parallel = sp, c.pp_schedule = sched, c.pp_virtual = v, c.pp_layers = split;
                  c.zero_accumulate = "auto";
                  try {
                    c.validate();
                    // balanced: only where it differs from the even split
                    if (*split && (base.n_layer % (pp * c.virtual_stages()) == 0) &&
                        c.pp_split() == pipeline_split(base.n_layer, int(pp * c.virtual_stages())))
                      continue;
                  } catch (const Error&) {
                    continue;  // not a layout of this model (heads over tp, layers over pp, ...)
                  }
                  Prediction p;  // what does not fit is kept, unpriced (a cluster's search is large)
                  p.cfg = c;
                  predict_memory(c, p);
                  p.fits = memory_limit <= 0 || p.memory_bytes <= memory_limit;
                  if (p.fits) p = predict_step(c, m);
                  else p.step_s = std::numeric_limits<double>::infinity();
                  out.push_back(std::move(p));
                }
      }
    }
  std::stable_sort(out.begin(), out.end(), [](const Prediction& a, const Prediction& b) {
    return a.fits != b.fits ? a.fits : a.step_s < b.step_s;
  });
  return out;
}

void calibrate_trainer(MachineProfile& m, Communicator& world, std::ostream& log) {
  m.micro_batch_s = m.block_s = m.step_overhead_s = 0;
  auto residual = [&](int64_t layers, int64_t micro) {  // measured - predicted seconds per step
    TrainConfig c;
    c.n_layer = layers, c.n_head = 2, c.n_embd = 32, c.vocab_size = 256, c.seq_len = 16, c.max_seq_len = 16;
    c.dp = world.size(), c.micro_batch_size = 1, c.batch_size = micro * c.dp;
    c.eval_every = 0, c.checkpoints = 0, c.peak_gflops = 100;
    Mesh mesh(world, MeshShape{world.size(), 1, 1});
    BenchOptions bo;
    bo.warmup = 3, bo.steps = 20;
    std::ostringstream quiet;
    std::vector<double> ms;
    for (int round = 0; round < 3; round++) ms.push_back(bench(c, bo, quiet, &mesh).ms_per_step);
    std::sort(ms.begin(), ms.end());
    double r = ms[1] * 1e-3 - predict_step(c, m).step_s;
    world.all_reduce(&r, 1, DType::fp64);  // rank 0's figure, on every rank
    return r / world.size();
  };
  const double a = residual(1, 2), b = residual(1, 16), c = residual(4, 16);
  // r = step + micro x (per micro-batch + blocks x per block)
  const double block = std::max(0.0, (c - b) / (3 * 16)), micro = std::max(0.0, (b - a) / 14 - block);
  m.block_s = block;
  m.micro_batch_s = micro;
  m.step_overhead_s = std::max(0.0, a - 2 * (micro + block));
  log << "  the trainer outside kernels: " << micro * 1e6 << " us per micro-batch, " << block * 1e6
      << " us per block per micro-batch, " << m.step_overhead_s * 1e6 << " us per step\n";
}

Prediction choose_layout(TrainConfig& cfg, int ranks, const MachineProfile& m, double memory_limit) {
  const std::vector<Prediction> ps = plan_layouts(cfg, ranks, m, memory_limit);
  MESHLM_CHECK(!ps.empty() && ps[0].fits, "--layout auto: no layout of " + std::to_string(ranks) +
                                              " ranks fits this model and batch in memory (" +
                                              std::to_string(ps.size()) + " valid layouts)");
  const TrainConfig& c = ps[0].cfg;
  cfg.dp = c.dp, cfg.tp = c.tp, cfg.pp = c.pp, cfg.micro_batch_size = c.micro_batch_size, cfg.zero = c.zero;
  cfg.recompute = c.recompute, cfg.sequence_parallel = c.sequence_parallel, cfg.pp_schedule = c.pp_schedule;
  cfg.pp_virtual = c.pp_virtual;
  cfg.pp_layers = c.pp_layers, cfg.zero_accumulate = c.zero_accumulate;
  cfg.layout.clear();  // chosen: a checkpoint records the layout, not the request
  return ps[0];
}

}  // namespace meshlm
