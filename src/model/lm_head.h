// The LM head and its loss: logits = x @ W^T with W (Vp, C) (tied to the token embedding, or
// its own), column-parallel over the vocabulary (this rank's Vl = Vp / tp columns, never
// gathered), then the vocabulary-parallel cross-entropy (parallel/vocab_parallel.h), which
// writes the logits' gradient over the logits in place.
#pragma once
#include <string>
#include <vector>

#include "model/linear.h"
#include "parallel/vocab_parallel.h"

namespace meshlm {

class LmHead {
 public:
  // weight: the parameter name of W; tied: declared by the embedding too (the decl given is
  // the one a stage without the embedding declares).
  LmHead(int64_t C, int64_t V, int64_t Vp, const ParamDecl& weight, bool tied);
  void declare(std::vector<ParamDecl>& out) const;
  void bind(const ParamTable& table) { linear_.bind(table); }
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act logits() const { return linear_.output(); }
  Linear& linear() { return linear_; }
  // Logits of x (Ns, C), then with targets the mean loss (and with dloss_scale its gradient).
  double forward(Ctx& c, const void* x, const int32_t* targets, float dloss_scale);
  // dx += the gradient of x from the logits' gradient the forward left.
  void backward(Ctx& c, void* dx, const void* x) { linear_.backward(c, dx, c.at(logits()), x); }
  void cost(const CostContext& c, std::vector<Cost>& out) const;

 private:
  int64_t C_, V_, Vp_;
  ParamDecl weight_;
  Linear linear_;
  struct Saved {  // beside the logits (the Linear's output, replaced by their gradient)
    Act losses, lse;  // (N) each, statistics
  } saved_;
  std::unique_ptr<VocabParallelCrossEntropy> ce_;  // bound to the context's group on first use
};

}  // namespace meshlm
