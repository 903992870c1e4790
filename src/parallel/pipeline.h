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
// Interleaved 1F1B (Narayanan et al. 2021, Megatron's virtual pipeline): each rank holds v model
// chunks, rank s chunk c being virtual stage c pp + s, so a micro-batch loops v times around the
// ranks (the last rank's chunk c feeds the first rank's chunk c + 1). A rank runs its m v
// chunk-forwards in groups of pp micro-batches per chunk (pp forwards of chunk 0, then pp of chunk
// 1, ...), 2 (pp - s - 1) + (v - 1) pp of them as warm-up, then alternates, backwards visiting the
// chunks in reverse. Each chunk does 1/v of the stage's work, so the bubble shrinks v-fold:
// (pp - 1) / (v m + pp - 1), for more micro-batches in flight (stage 0 holds about
// (1 + (pp - 1) / (v pp)) times 1F1B's activations) and v times the point-to-point messages.
// It needs m a multiple of pp.
#pragma once
#include <string>
#include <vector>

namespace meshlm {

enum class PipelineSchedule { gpipe, one_f_one_b, interleaved };
// "gpipe" | "1f1b" | "interleaved"
PipelineSchedule pipeline_schedule_from_name(const std::string& name);
const char* pipeline_schedule_name(PipelineSchedule s);

struct PipeAction {
  enum Kind { recv_activation, forward, send_activation, recv_grad, backward, send_grad };
  Kind kind;
  int micro_batch;
  int chunk = 0;  // which of the rank's model chunks (interleaved; else 0)
  bool operator==(const PipeAction&) const = default;
};
const char* pipe_action_name(PipeAction::Kind k);

// Stage `stage` (0 .. pp-1) of pp, with m >= 1 micro-batches; v model chunks per stage (the
// interleaved schedule: v >= 2, m a multiple of pp; the others: v = 1).
std::vector<PipeAction> pipeline_actions(PipelineSchedule s, int stage, int pp, int m, int v = 1);

// Micro-batches whose forward has run and whose backward has not, at most, over the list: of
// one chunk (chunk >= 0) or of all of them together (chunk < 0).
int max_in_flight(const std::vector<PipeAction>& actions, int chunk = -1);

// The idle fraction of every stage when each forward and backward of a whole stage takes one time
// unit (a chunk's 1/v): (pp - 1) / (v m + pp - 1) for every schedule. The log prints it next to
// the measured one.
double predicted_bubble(int pp, int m, int v = 1);

// The step of a pipeline whose forward and backward of one micro-batch take fwd[s][c] and
// bwd[s][c] seconds on stage s's chunk c, and whose boundary transfer keeps the sender `send`
// seconds (the receiver gets it when the send ends; a receive waits for it): every stage's
// action list run together, as a planner predicts a schedule with uneven stages
// (train/planner.h). Throws on a deadlock.
struct PipeTimes {
  std::vector<std::vector<double>> fwd, bwd;  // [stage][chunk]
  double send = 0;
};
struct PipeSimulation {
  double makespan = 0;        // the step, until the last stage finishes
  std::vector<double> busy;   // per stage: inside forwards and backwards
};
PipeSimulation simulate_pipeline(PipelineSchedule s, int pp, int m, int v, const PipeTimes& t);

}  // namespace meshlm
