// The vocabulary-parallel cross-entropy (Megatron's): each tensor-parallel rank holds the
// logits of its columns [v0, v0 + Vl) of the padded vocabulary and the loss is computed without
// ever gathering them. Per row: this rank's log-sum-exp (backend), the maximum over the group,
// each rank's sum of exp(lse - max) and the target's logit from the rank that holds it, summed
// over the group, then lse = max + log(sum) and loss = lse - target logit; the gradient of each
// rank's columns follows from the whole row's lse. Built from backend kernels and the group's
// named collectives; no allocation per call (the row vectors are grown once) and no host loop.
// On a group of one it is the fused kernel (crossentropy_forward_backward).
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "parallel/collectives.h"

namespace meshlm {

class VocabParallelCrossEntropy {
 public:
  explicit VocabParallelCrossEntropy(TpCollectives& tp) : tp_(tp) {}
  // logits (N, Vl): this rank's columns, compute dtype `dt`; targets (N) in [0, V), backend
  // memory; losses and lse (N) in the accumulation dtype. If dloss != 0 the logits are
  // replaced IN PLACE by dloss * (softmax - onehot(target)) (backend/ops.inc).
  void forward_backward(Backend& be, DType dt, void* losses, void* lse, void* logits, const int32_t* targets,
                        float dloss, int64_t N, int64_t V, int64_t Vl);

 private:
  TpCollectives& tp_;
  Tensor rows_;   // (3, N) fp32: row max, sum of exps, target logit
  Buffer local_;  // (N) int32: the target's column on this rank, or -1
};

}  // namespace meshlm
