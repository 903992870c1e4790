#include "parallel/pipeline.h"

#include <algorithm>

#include "core/error.h"

namespace meshlm {

PipelineSchedule pipeline_schedule_from_name(const std::string& name) {
  if (name == "1f1b") return PipelineSchedule::one_f_one_b;
  if (name == "gpipe") return PipelineSchedule::gpipe;
  if (name == "interleaved") return PipelineSchedule::interleaved;
  throw Error("pp_schedule must be 1f1b, gpipe or interleaved, not '" + name + "'");
}

const char* pipeline_schedule_name(PipelineSchedule s) {
  return s == PipelineSchedule::gpipe ? "gpipe" : s == PipelineSchedule::interleaved ? "interleaved" : "1f1b";
}

const char* pipe_action_name(PipeAction::Kind k) {
  switch (k) {
    case PipeAction::recv_activation: return "recv_activation";
    case PipeAction::forward: return "forward";
    case PipeAction::send_activation: return "send_activation";
    case PipeAction::recv_grad: return "recv_grad";
    case PipeAction::backward: return "backward";
    case PipeAction::send_grad: return "send_grad";
  }
  return "?";
}

namespace {

// The k-th chunk-forward (or chunk-backward) of stage `stage` in the interleaved schedule:
// groups of pp micro-batches per chunk, the chunks in order for forwards and reversed for
// backwards, so each chunk still sees its micro-batches in order.
PipeAction interleaved_item(PipeAction::Kind kind, int k, int pp, int v) {
  const int group = k / (pp * v), within = k % (pp * v);
  const int chunk = kind == PipeAction::forward ? within / pp : v - 1 - within / pp;
  return {kind, group * pp + within % pp, chunk};
}

}  // namespace

std::vector<PipeAction> pipeline_actions(PipelineSchedule s, int stage, int pp, int m, int v) {
  MESHLM_CHECK(pp >= 1 && stage >= 0 && stage < pp && m >= 1, "pipeline_actions: bad stage or micro-batch count");
  MESHLM_CHECK((s == PipelineSchedule::interleaved) == (v > 1) && v >= 1,
               "pipeline_actions: the interleaved schedule and only it runs v >= 2 chunks per stage");
  MESHLM_CHECK(v == 1 || m % pp == 0, "interleaved 1F1B needs the micro-batches per step (" + std::to_string(m) +
                                          ") to be a multiple of pp (" + std::to_string(pp) + ")");
  std::vector<PipeAction> a;
  // Virtual stage c pp + stage: the first receives no activation, the last sends none.
  auto first = [&](int c) { return c == 0 && stage == 0; };
  auto last = [&](int c) { return c == v - 1 && stage == pp - 1; };
  auto fwd = [&](PipeAction f) {
    if (!first(f.chunk)) a.push_back({PipeAction::recv_activation, f.micro_batch, f.chunk});
    a.push_back(f);
    if (!last(f.chunk)) a.push_back({PipeAction::send_activation, f.micro_batch, f.chunk});
  };
  auto bwd = [&](PipeAction b) {
    if (!last(b.chunk)) a.push_back({PipeAction::recv_grad, b.micro_batch, b.chunk});
    a.push_back(b);
    if (!first(b.chunk)) a.push_back({PipeAction::send_grad, b.micro_batch, b.chunk});
  };
  auto F = [&](int k) { return interleaved_item(PipeAction::forward, k, pp, v); };
  auto B = [&](int k) { return interleaved_item(PipeAction::backward, k, pp, v); };
  // Backwards run in micro-batch order (per chunk) in every schedule, so every parameter
  // accumulates its gradients in the same order as one rank accumulating m micro-batches.
  const int total = m * v;
  if (s == PipelineSchedule::gpipe) {
    for (int i = 0; i < m; i++) fwd({PipeAction::forward, i});
    for (int i = 0; i < m; i++) bwd({PipeAction::backward, i});
    return a;
  }
  const int warmup = s == PipelineSchedule::interleaved ? std::min(2 * (pp - stage - 1) + (v - 1) * pp, total)
                                                        : std::min(pp - stage - 1, m);
  for (int k = 0; k < warmup; k++) fwd(F(k));
  for (int k = warmup; k < total; k++) {  // steady state: forward k, backward k - warmup
    fwd(F(k));
    bwd(B(k - warmup));
  }
  for (int k = total - warmup; k < total; k++) bwd(B(k));  // cool-down
  return a;
}

int max_in_flight(const std::vector<PipeAction>& actions, int chunk) {
  int now = 0, most = 0;
  for (const PipeAction& x : actions) {
    if (chunk >= 0 && x.chunk != chunk) continue;
    if (x.kind == PipeAction::forward) most = std::max(most, ++now);
    if (x.kind == PipeAction::backward) now--;
  }
  return most;
}

double predicted_bubble(int pp, int m, int v) { return double(pp - 1) / double(v * m + pp - 1); }

PipeSimulation simulate_pipeline(PipelineSchedule s, int pp, int m, int v, const PipeTimes& t) {
  std::vector<std::vector<PipeAction>> lists;
  for (int st = 0; st < pp; st++) lists.push_back(pipeline_actions(s, st, pp, m, v));
  std::vector<size_t> pc(size_t(pp), 0);
  PipeSimulation sim;
  std::vector<double> clock(size_t(pp), 0.0);
  sim.busy.assign(size_t(pp), 0.0);
  // When micro-batch i's activation (gradient) reaches virtual stage vs: [vs m + i]; < 0 not yet.
  std::vector<double> act(size_t(pp * v * m), -1.0), grad(size_t(pp * v * m), -1.0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int st = 0; st < pp; st++)
      for (; pc[size_t(st)] < lists[size_t(st)].size(); pc[size_t(st)]++, progress = true) {
        const PipeAction& a = lists[size_t(st)][pc[size_t(st)]];
        const int vs = a.chunk * pp + st;
        double& now = clock[size_t(st)];
        if (a.kind == PipeAction::recv_activation || a.kind == PipeAction::recv_grad) {
          const double at = (a.kind == PipeAction::recv_grad ? grad : act)[size_t(vs * m + a.micro_batch)];
          if (at < 0) break;  // waits for the peer
          now = std::max(now, at);
        } else if (a.kind == PipeAction::send_activation || a.kind == PipeAction::send_grad) {
          now += t.send;
          if (a.kind == PipeAction::send_grad) grad[size_t((vs - 1) * m + a.micro_batch)] = now;
          else act[size_t((vs + 1) * m + a.micro_batch)] = now;
        } else {
          const double d = (a.kind == PipeAction::forward ? t.fwd : t.bwd)[size_t(st)][size_t(a.chunk)];
          now += d;
          sim.busy[size_t(st)] += d;
        }
      }
  }
  for (int st = 0; st < pp; st++) {
    MESHLM_CHECK(pc[size_t(st)] == lists[size_t(st)].size(), "simulate_pipeline: the schedule deadlocks");
    sim.makespan = std::max(sim.makespan, clock[size_t(st)]);
  }
  return sim;
}

}  // namespace meshlm
