// ZeRO-2 and ZeRO-3 (fully sharded data parallelism) as a GradSync strategy beside buckets and
// ZeRO-1 (train/grad_sync.h). Every stage shards the flat buffers the same way: rank r of the
// dp group owns [P r / dp, P (r+1) / dp) (Zero1Shard), so a checkpoint, the optimizer and the
// gradient norm read the same slice at stages 1, 2 and 3.
//
//   stage 2: the fp32 masters (when the compute dtype is 16-bit) and the gradients are stored
//            as the shard. During backward each unit's gradient goes into a window the
//            strategy opens before the unit's backward; once the unit is final the window is
//            reduce-scattered (non-blocking, overlapping the units still to run) and each rank
//            adds its part into its gradient shard. The 16-bit weights stay whole, all-gathered
//            after the optimizer steps each shard (as ZeRO-1).
//   stage 3: the weights are stored as the shard too. Before a unit's forward and before its
//            backward its weights (the compute dtype's: 16-bit, or the fp32 masters) are
//            all-gathered into a window, the next unit's gather started so it runs while this one
//            computes; windows of units no longer needed are released. The tied embedding the
//            LM head shares stays gathered from its first use until the optimizer step.
//
// Windows come from a small pool, so a step allocates nothing after the first. With several
// micro-batches, plan.hold_whole_grads chooses between reduce-scattering every micro-batch's
// windows (more traffic, only the shard held) and whole gradients held until the last
// micro-batch (one reduce-scatter, as ZeRO-1; a pipeline always does this).
#pragma once
#include <memory>

#include "train/grad_sync.h"

namespace meshlm {

// What a rank of this plan stores (layer.h's WeightResidency) for a stage-`pp_rank` table of
// `total` elements: the default (whole buffers) below stage 2.
WeightResidency zero_residency(const Plan& plan, DType compute, int64_t total, int dp_rank);

// The strategy for plan.grad_sync zero2 / zero3; installs itself as the model's residency hooks.
std::unique_ptr<GradSync> make_sharded_sync(const Plan& plan, Mesh& mesh, Model& model);

}  // namespace meshlm
