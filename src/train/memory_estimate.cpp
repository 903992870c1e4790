#include "train/memory_estimate.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "model/model.h"

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
  return gib(total()) + " GiB (weights " + gib(weights) + ", grads " + gib(grads) + ", Adam moments " + gib(moments) +
         ", activations " + gib(activations) + ")";
}

MemoryEstimate estimate_memory(const TrainConfig& cfg, int pp_rank) {
  const Plan plan = cfg.plan();
  const ModelConfig m = cfg.model();
  const double P = double(param_table(m, plan, pp_rank, 0).total());
  const bool lowp = cfg.precision != "fp32";
  MemoryEstimate e;
  e.weights = P * 4 + (lowp ? P * 2 : 0);  // fp32 masters and the 16-bit compute copy
  e.grads = P * 4;
  e.moments = P * 8 / double(cfg.zero ? cfg.dp : 1);
  // Activations kept from forward to backward, per micro-batch in flight (a pipeline holds up
  // to pp of them under 1F1B, every one under GPipe), and the logits and their gradient.
  const DType dt = lowp ? DType::bf16 : DType::fp32;
  double saved = 0;
  for (const UnitCost& u : unit_costs(m, plan, pp_rank, dt, cfg.micro_batch(), cfg.seq_len))
    for (const Cost& c : u.ops)
      if (c.kind == Cost::Kind::saved) saved += double(c.bytes);
  const int64_t accum = cfg.accumulation_steps();
  const double in_flight = cfg.pp == 1 ? 1.0 : double(cfg.pp_schedule == "gpipe" ? accum : std::min<int64_t>(accum, cfg.pp));
  const double logits = double(cfg.micro_batch() * cfg.seq_len) * double(m.vocab_size) / double(cfg.tp) * 4 * 2;
  e.activations = saved * in_flight + logits;
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
  return lim;
}

void check_memory_fits(const TrainConfig& cfg, int rank, int pp_rank) {
  const MemoryEstimate e = estimate_memory(cfg, pp_rank);
  const MemoryLimit lim = memory_available();
  MESHLM_CHECK(e.total() <= lim.bytes, "the model does not fit: rank " + std::to_string(rank) + " needs at least " +
                                           e.describe() + ", it can have " + gib(lim.bytes) + " GiB (" + lim.source +
                                           "); use a smaller model or batch, more ranks (--tp, --pp, --zero 1) "
                                           "or --recompute");
}

}  // namespace meshlm
