#include "parallel/pipeline.h"

#include <algorithm>

#include "core/error.h"

namespace meshlm {

PipelineSchedule pipeline_schedule_from_name(const std::string& name) {
  if (name == "1f1b") return PipelineSchedule::one_f_one_b;
  if (name == "gpipe") return PipelineSchedule::gpipe;
  throw Error("pp_schedule must be 1f1b or gpipe, not '" + name + "'");
}

const char* pipeline_schedule_name(PipelineSchedule s) {
  return s == PipelineSchedule::gpipe ? "gpipe" : "1f1b";
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

std::vector<PipeAction> pipeline_actions(PipelineSchedule s, int stage, int pp, int m) {
  MESHLM_CHECK(pp >= 1 && stage >= 0 && stage < pp && m >= 1, "pipeline_actions: bad stage or micro-batch count");
  const bool first = stage == 0, last = stage == pp - 1;
  std::vector<PipeAction> a;
  auto fwd = [&](int i) {
    if (!first) a.push_back({PipeAction::recv_activation, i});
    a.push_back({PipeAction::forward, i});
    if (!last) a.push_back({PipeAction::send_activation, i});
  };
  auto bwd = [&](int i) {
    if (!last) a.push_back({PipeAction::recv_grad, i});
    a.push_back({PipeAction::backward, i});
    if (!first) a.push_back({PipeAction::send_grad, i});
  };
  // Backwards run in micro-batch order in both schedules, so every stage accumulates its
  // gradients in the same order as one rank accumulating m micro-batches.
  if (s == PipelineSchedule::gpipe) {
    for (int i = 0; i < m; i++) fwd(i);
    for (int i = 0; i < m; i++) bwd(i);
    return a;
  }
  const int warmup = std::min(pp - stage - 1, m);
  for (int i = 0; i < warmup; i++) fwd(i);
  for (int i = warmup; i < m; i++) {  // steady state: forward i, backward i - warmup
    fwd(i);
    bwd(i - warmup);
  }
  for (int i = m - warmup; i < m; i++) bwd(i);  // cool-down
  return a;
}

int max_in_flight(const std::vector<PipeAction>& actions) {
  int now = 0, most = 0;
  for (const PipeAction& x : actions) {
    if (x.kind == PipeAction::forward) most = std::max(most, ++now);
    if (x.kind == PipeAction::backward) now--;
  }
  return most;
}

double predicted_bubble(int pp, int m) { return double(pp - 1) / double(m + pp - 1); }

}  // namespace meshlm
