// Pipeline schedules as data. A schedule is, for one stage, the ordered list of what it does in
// one training step with m micro-batches: receive an activation, run a forward, send its output,
// receive an output gradient, run a backward, send the input gradient. The executor (the
// trainer) walks the list; the lists are tested without MPI (tests/parallel/test_pipeline.cpp):
// every micro-batch forwarded and backwarded once per stage, every send matched by the next or
// previous stage's receive in the same order, the stages' lists together free of deadlock.
//
// GPipe: all m forwards, then all m backwards (m micro-batches in flight per stage).
// 1F1B (PipeDream-flush, Megatron's default): stage s runs min(pp - s - 1, m) warm-up forwards,
// then alternates one forward and one backward, then drains the remaining backwards; at most
// pp - s micro-batches are in flight on stage s, whatever m is. Both idle each stage for the
// same bubble: (pp - 1) / (m + pp - 1) of the step when every forward and backward takes the
// same time on every stage.
#pragma once
#include <string>
#include <vector>

namespace meshlm {

enum class PipelineSchedule { gpipe, one_f_one_b };
PipelineSchedule pipeline_schedule_from_name(const std::string& name);  // "gpipe" | "1f1b"
const char* pipeline_schedule_name(PipelineSchedule s);

struct PipeAction {
  enum Kind { recv_activation, forward, send_activation, recv_grad, backward, send_grad };
  Kind kind;
  int micro_batch;
  bool operator==(const PipeAction&) const = default;
};
const char* pipe_action_name(PipeAction::Kind k);

// Stage `stage` (0 .. pp-1) of pp, with m >= 1 micro-batches.
std::vector<PipeAction> pipeline_actions(PipelineSchedule s, int stage, int pp, int m);

// Micro-batches whose forward has run and whose backward has not, at most, over the list.
int max_in_flight(const std::vector<PipeAction>& actions);

// The idle fraction of every stage when each forward and backward takes one time unit:
// (pp - 1) / (m + pp - 1) for both schedules. The log prints it next to the measured one.
double predicted_bubble(int pp, int m);

}  // namespace meshlm
