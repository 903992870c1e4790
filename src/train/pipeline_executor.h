// Runs one pipeline stage's schedule (parallel/pipeline.h) for a training step: the model is this
// rank's stage, `pp` the pipeline communicator (stage s talks to s - 1 and s + 1 of the same
// data- and tensor-parallel coordinates; with interleaving also the last stage to the first, whose
// next chunk continues the stack). Every receive of the step is posted at its start
// (non-blocking, one buffer per micro-batch, chunk and direction) and waited for where the
// schedule needs it; sends are non-blocking and complete by the end of the step. Activations and
// their gradients travel in the compute dtype, (Ns, C) per micro-batch.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "parallel/communicator.h"
#include "parallel/pipeline.h"

namespace meshlm {

struct PipelineStepTimes {
  double busy_s = 0;   // inside forward and backward
  double total_s = 0;  // the whole schedule, until the last send completed
};

class PipelineExecutor {
 public:
  // m micro-batches per step; sets the model's activation slots (m for GPipe, at most pp - s
  // for 1F1B, per chunk for interleaved 1F1B: the model's chunks are the plan's pp_virtual).
  PipelineExecutor(Model& model, Communicator& pp, PipelineSchedule schedule, int m);
  const std::vector<PipeAction>& actions() const { return actions_; }

  // One step: tokens[i], targets[i] (B, T) are micro-batch i (every stage is given them; the
  // first reads tokens, the last targets). Returns the sum of the micro-batches' mean losses on
  // the last stage, 0 elsewhere. last_hooks: the model's hooks during the last micro-batch's
  // backward (data parallelism reduces gradient buckets as they become final).
  double step(const std::vector<const int32_t*>& tokens, const std::vector<const int32_t*>& targets,
              int64_t B, int64_t T, float dloss_scale, UnitHooks* last_hooks = nullptr);
  const PipelineStepTimes& times() const { return times_; }

  // Forward only (evaluation), one batch through every stage in turn: the mean loss on the
  // last stage, 0 elsewhere.
  double forward_only(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T);

 private:
  Model& model_;
  Communicator& pp_;
  int m_;
  std::vector<PipeAction> actions_;
  int v_;  // model chunks per stage
  std::vector<Buffer> act_in_, act_out_, grad_in_, grad_out_;  // (v m) x (Ns, C), compute dtype, [c m + i]
  Buffer eval_buf_;
  size_t buffer_bytes_ = 0;  // of each buffer above
  PipelineStepTimes times_;
};

}  // namespace meshlm
