#include "model/lm_head.h"

namespace meshlm {

LmHead::LmHead(int64_t C, int64_t V, int64_t Vp, const ParamDecl& weight, bool tied)
    : C_(C),
      V_(V),
      Vp_(Vp),
      weight_(weight),
      linear_({"lm_head", C, Vp, 0.02, false, WeightLayout::out_in, weight.name, true, Keep::always, "lm_head"}) {
  weight_.tied = tied;
}

void LmHead::declare(std::vector<ParamDecl>& out) const { out.push_back(weight_); }

void LmHead::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  linear_.plan(p, d, sp);               // logits (N, Vl), replaced by their gradient when training
  saved_.losses = p.saved(d.N, true);         // (N)
  saved_.lse = p.saved(d.N, true);            // (N) the whole row's log-sum-exp (vocabulary-parallel)
}

double LmHead::forward(Ctx& c, const void* x, const int32_t* targets, float dloss_scale) {
  linear_.forward(c, x);
  if (!targets) return 0.0;
  const int64_t N = c.d.N;
  if (!ce_) ce_ = std::make_unique<VocabParallelCrossEntropy>(c.tp);
  const float dloss = dloss_scale / float(N);  // d(scale * mean) / d(loss_i)
  ce_->forward_backward(c.be, c.dt, c.at(saved_.losses), c.at(saved_.lse), c.at(logits()), targets, dloss, N, V_,
                        linear_.local_out());
  return c.be.sum(c.w.master_dtype(), c.at(saved_.losses), N) / double(N);
}

void LmHead::cost(const CostContext& c, std::vector<Cost>& out) const {
  linear_.cost(c, out);
  const int64_t N = c.d.N, Vl = Vp_ / c.tp, esz = int64_t(dtype_size(c.dt));
  c.memory(out, "cross-entropy", false, 2 * N * Vl * esz);  // read the logits, write their gradient
  if (c.tp > 1)  // row max, sum of exps, target logit
    out.push_back({Cost::Kind::collective, "vocabulary-parallel cross-entropy", false, 0, 0, 0, DType::fp32, 3 * N * 4,
                   "all_reduce", "tp"});
  c.saved(out, "losses and lse", Keep::always, 2 * N * int64_t(dtype_size(c.stat_dt)));
}

}  // namespace meshlm
