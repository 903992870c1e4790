#include "train/memory_estimate.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include "core/error.h"
#include "model/family.h"
#include "model/model.h"
#include "model/unit.h"
#include "parallel/pipeline.h"

namespace meshlm {

namespace {

std::string gib(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", b / double(1ull << 30));
  return buf;
}

// cgroup v2's memory.max or v1's limit_in_bytes; 0 when unlimited or absent.
double cgroup_limit() {
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string v;
    if (!(in >> v) || v == "max") continue;
    const double b = std::strtod(v.c_str(), nullptr);
    if (b > 0 && b < 1e18) return b;
  }
  return 0;
}

}  // namespace

std::string MemoryEstimate::describe() const {
  return gib(total()) + " GiB (masters " + gib(masters) + (compute > 0 ? ", 16-bit copy " + gib(compute) : "") +
         ", grads " + gib(grads) + ", Adam moments " + gib(moments) + (working > 0 ? ", ZeRO windows " + gib(working) : "") +
         ", activations " + gib(activations) + ")";
}

namespace {

// The largest unit's parameters (a block, the embedding, the head; fsdp_unit blocks together)
// and the tied parameter's: what ZeRO-3 gathers at once.
std::pair<double, double> largest_unit(const ParamTable& table, const ModelConfig& m, int64_t fsdp_unit) {
  const std::string tied = tied_parameter(m);
  const double tied_n = !tied.empty() && table.has(tied) ? double(table.at(tied).numel()) : 0;
  std::map<std::string, double> units;
  for (const ParamEntry& e : table.entries())
    if (e.name != tied) units[e.group] += double(e.numel());
  double big = 0;
  for (const auto& [name, n] : units) {
    big = std::max(big, is_block_unit(name) ? n * double(fsdp_unit) : n);
  }
  return {big, tied_n};
}

std::string bytes_text(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", b);
  return buf;
}

}  // namespace

// Bytes per parameter by stage (16-bit compute; fp32 has no copy, its masters are the weights):
//   0: 4 + 2 + 4 + 8        1: 4 + 2 + 4 + 8/dp        2: 4/dp + 2 + 4/dp + 8/dp
//   3: 4/dp + 2/dp + 4/dp + 8/dp   (= 16/dp in fp32 ... 18/dp in 16 bits)
// plus, at stage 2 and 3, the windows: gradient windows of the tied parameter and up to three
// units (the one in backward, two reducing) in fp32 with the receive buffers of those reducing,
// and at stage 3 the gathered weights of the tied parameter and two units (the one computing,
// the next prefetched) in the compute dtype.
MemoryEstimate estimate_memory(const TrainConfig& cfg, int pp_rank) {
  const Plan plan = cfg.plan();
  const ModelConfig m = cfg.model();
  const ParamTable table = param_table(m, plan, pp_rank, 0);
  const double P = double(table.total());
  const bool lowp = cfg.precision != "fp32";
  const int zero = plan.zero_stage();
  const double dp = double(cfg.dp);
  const bool shard_masters = zero == 3 || (zero == 2 && lowp), window_grads = zero >= 2 && !plan.hold_whole_grads;
  MemoryEstimate e;
  e.params = P;
  e.masters = P * 4 / (shard_masters ? dp : 1);
  e.compute = lowp ? P * 2 / (zero == 3 ? dp : 1) : 0;
  e.grads = P * 4 / (window_grads ? dp : 1);
  e.moments = P * 8 / (zero >= 1 ? dp : 1);
  const auto [unit, tied] = largest_unit(table, m, plan.fsdp_unit);
  // ZeRO-2/3's gradient windows (the tied one and up to three units open or reducing) and the
  // receive buffers of the reduce-scatters in flight: a window lies in one rank's shard (the
  // shards are contiguous), so that rank receives all of it; rank 0's shard holds the tied one.
  // Reduced in 16 bits: the windows' 16-bit copies too, and the fp32 of the largest received.
  if (window_grads) {
    const double g = double(dtype_size(plan.grad_reduce)), reducing = tied + 2 * unit;
    e.working += (tied + 3 * unit) * 4 + reducing * g;
    if (g < 4) e.working += reducing * g + tied * 4;
  }
  if (zero == 3) e.working += (tied + 2 * unit) * (lowp ? 2 : 4);
  const std::string d = "/" + std::to_string(cfg.dp);
  e.formula = "4" + std::string(shard_masters ? d : "") + (lowp ? " + 2" + std::string(zero == 3 ? d : "") : "") +
              " + 4" + (window_grads ? d : "") + " + 8" + (zero >= 1 ? d : "") + " = " +
              bytes_text(double(int((e.masters + e.compute + e.grads + e.moments) / P * 100 + 0.5)) / 100) +
              " bytes/parameter";
  // Activations as the stage lays them out (model/model.h activation_layout): a slot per
  // micro-batch in flight (the schedule's own count: 1 without a pipeline, up to pp - s under
  // 1F1B, every one under GPipe, the most of any chunk under interleaving), each holding every
  // chunk's saved buffers, and the scratch they share (backward's buffers, what recomputation
  // rebuilds, the logits and their gradient).
  const DType dt = lowp ? DType::bf16 : DType::fp32;
  const ActivationLayoutBytes a = activation_layout(m, plan, pp_rank, dt, cfg.micro_batch(), cfg.seq_len);
  int slots = 1;
  if (cfg.pp > 1) {
    const std::vector<PipeAction> actions =
        pipeline_actions(plan.pp_schedule, pp_rank, int(cfg.pp), int(cfg.accumulation_steps()), plan.pp_virtual);
    for (int c = 0; c < plan.pp_virtual; c++) slots = std::max(slots, max_in_flight(actions, c));
  }
  e.activations = double(slots) * double(a.saved) + double(a.scratch);
  return e;
}

MemoryLimit memory_available() {
  MemoryLimit lim;
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int ranks = std::max(1, local ? std::atoi(local) : 1);
  lim.bytes = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGESIZE)) / ranks;
  lim.source = ranks > 1 ? "physical memory / " + std::to_string(ranks) + " ranks on this node" : "physical memory";
  if (const double cg = cgroup_limit(); cg > 0 && cg / ranks < lim.bytes) {
    lim.bytes = cg / ranks;
    lim.source = "the cgroup's memory limit" + (ranks > 1 ? " / " + std::to_string(ranks) + " ranks" : std::string());
  }
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && double(rl.rlim_cur) < lim.bytes) {
    lim.bytes = double(rl.rlim_cur);
    lim.source = "RLIMIT_AS (ulimit -v)";
  }
  if (::getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && double(rl.rlim_cur) < lim.bytes) {
    lim.bytes = double(rl.rlim_cur);
    lim.source = "RLIMIT_DATA (ulimit -d)";
  }
  return lim;
}

void check_memory_fits(const TrainConfig& cfg, int rank, int pp_rank) {
  const MemoryEstimate e = estimate_memory(cfg, pp_rank);
  const MemoryLimit lim = memory_available();
  MESHLM_CHECK(e.total() <= lim.bytes, "the model does not fit: rank " + std::to_string(rank) + " needs at least " +
                                           e.describe() + ", it can have " + gib(lim.bytes) + " GiB (" + lim.source +
                                           "); use a smaller model or batch, more ranks (--tp, --pp), a higher --zero stage (1-3) "
                                           "or --recompute");
}

}  // namespace meshlm
