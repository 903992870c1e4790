// Data-parallel gradient synchronisation as strategies behind one interface, chosen by the
// plan (plan.grad_sync): none (dp 1), buckets (all-reduced in flat buckets as backward
// finalizes them, overlapped with the rest of backward), and ZeRO-1 (reduce-scattered: each
// rank steps its shard of the optimizer state, then the updated weights are all-gathered).
// A strategy is the model's UnitHooks during the last micro-batch's backward (where buckets
// start reducing; fully sharded parameters will be gathered in before_forward/backward), and
// is asked around the optimizer step.
//
// The sum over the ranks is what each strategy leaves: the trainer scales the loss by
// 1 / (dp * accumulation) so that sum is the gradient of the global batch's mean loss.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"
#include "plan/plan.h"
#include "precision/policy.h"

namespace meshlm {

class GradSync : public UnitHooks {
 public:
  // tied_end: the tied embedding's gradient is [0, tied_end) of the flat buffer on a pipeline
  // end (0 otherwise); the stages sum it before it is reduced, so hooks never start it.
  static std::unique_ptr<GradSync> make(const Plan& plan, Mesh& mesh, Model& model, int64_t tied_end);
  // The part of the flat buffers this rank's optimizer owns and whose gradient it holds
  // reduced after finish(): all of it, or ZeRO-1's shard.
  virtual Zero1Shard shard() const = 0;
  // Whether the hooks reduce during the last micro-batch's backward.
  virtual bool overlapped() const { return false; }
  virtual void begin_step(float* grads) {}
  // After backward (and the tied sum): the gradient summed over the ranks in shard().
  virtual void finish(float* grads) {}
  // How the ranks' sums of squares of their shard() combine into the global one.
  virtual ReduceOp norm_op() const { return ReduceOp::max; }
  // After the optimizer updated shard() of the masters: the compute weights of every rank
  // equal again (ZeRO-1 all-gathers them). Returns the seconds spent communicating.
  virtual double refresh_weights(Model& model, const WeightRounding& rounding);
  // Every rank's masters whole again (ZeRO-1 with a 16-bit compute copy leaves the masters
  // outside a rank's shard stale; a checkpoint or a report of the weights needs them).
  virtual void gather_masters(Model& model) {}
  virtual void masters_refreshed() {}  // the masters were rewritten whole (bf16 without masters)
  // Seconds finish() waited for reductions backward did not hide, since the last call.
  virtual double take_exposed_seconds() { return 0; }
  virtual bool reports_exposed() const { return false; }
  // ZeRO-3: seconds spent waiting for weight gathers (prefetch did not hide), since the last call.
  virtual double take_gather_wait_seconds() { return 0; }
  // Bytes of the strategy's own buffers (ZeRO-2/3's gathered and gradient windows).
  virtual int64_t working_set_bytes() const { return 0; }
  // "ZeRO-1: Adam moments sharded, gradients reduce-scattered" and the like, for the log.
  virtual std::string describe() const = 0;
};

// ZeRO-1/2's weight refresh: each rank rounds its shard of the updated masters into the 16-bit
// copy and the ranks all-gather that (half the bytes), or, in fp32, all-gather the masters
// themselves. Returns whether the masters outside the shard are now stale (16-bit compute with
// whole masters: ZeRO-1).
bool all_gather_updated_weights(Communicator& dp, Model& model, const Zero1Shard& shard, const WeightRounding& rounding);

}  // namespace meshlm
