// Linear: out = inp @ W + bias, and its parallel variants, chosen by the plan's shard spec of W
// (Megatron's ColumnParallelLinear / RowParallelLinear, applied from outside the model):
//
//   W stored (in, out) [in_out]    columns -> column-parallel: this rank's output columns from
//                                  the replicated input; rows -> row-parallel: this rank's input
//                                  columns give a partial output, summed over the group (the
//                                  replicated bias added by rank 0 alone, so the sum holds it once)
//   W stored (out, in) [out_in]    rows (nn.Linear's outputs: Llama's projections, the
//                                  vocabulary of the LM head) -> column-parallel; columns -> row-parallel
//
// A column-parallel weight may be split into fewer parts than ranks (grouped-query attention's
// key/value heads when tp exceeds them): the ranks sharing a part sum its weight gradient.
//
// The region boundaries are the named collectives (parallel/collectives.h): a column-parallel
// input enters by `copy` (identity forward, all-reduce of the input gradient backward) or, with
// sequence parallelism, by `gather` (all-gather of the rows forward, reduce-scatter backward; the
// gathered input is transient and gathered again in backward); a row-parallel output leaves by
// `reduce` (all-reduce) or `scatter` (reduce-scatter to this rank's rows). Unsharded, every
// collective is a no-op. A GemmQuantizer, when set, transforms the operands (fp8).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/layer.h"

namespace meshlm {

struct LinearSpec {
  std::string name;  // prefix of its parameters: "transformer.h.0.attn.c_attn"
  int64_t in = 0, out = 0;  // unsharded C and OC
  double init_std = 0.02;
  bool bias = true;
  WeightLayout layout = WeightLayout::in_out;
  std::string weight;  // the weight's parameter name when not <name>.weight (the tied LM head's wte)
  bool tied = false;   // the weight is declared by another unit too (the LM head's)
  Keep keep = Keep::unless_full;  // of its output
  std::string key;     // names its output's scratch when recomputed (shared by the blocks): "c_attn"
  bool entry_shared = false;  // enters with the first Linear of its group (forward_group): no collective of its own
};

class Linear {
 public:
  explicit Linear(LinearSpec spec);
  const std::string& name() const { return spec_.name; }
  const LinearSpec& spec() const { return spec_; }
  void declare(std::vector<ParamDecl>& out, const std::string& group) const;
  // Resolves the parameters and reads this rank's shard of W: the parallel variant.
  void bind(const ParamTable& table);
  bool column_parallel() const { return mode_ == Mode::column; }
  bool row_parallel() const { return mode_ == Mode::row; }
  int64_t local_in() const { return in_l_; }
  int64_t local_out() const { return out_l_; }
  // The output (rows x local out columns: N rows, or Ns for a row-parallel output under
  // sequence parallelism) and the shared scratch it needs.
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel);
  Act output() const { return saved_.out; }
  void set_quantizer(GemmQuantizer* q) { quantizer_ = q; }

  // out = inp @ W + b. inp: (N, in_l) for a row-parallel or unsharded product; for a
  // column-parallel one (Ns, in), this rank's rows under sequence parallelism.
  void forward(Ctx& c, const void* inp);
  // dinp (the shape of inp) += the input gradient; W's and b's gradients +=. dout: the
  // gradient of output() (it may be consumed: the LM head passes its logits' gradient).
  void backward(Ctx& c, void* dinp, const void* dout, const void* inp);
  void cost(const CostContext& c, std::vector<Cost>& out) const;

  // Column-parallel Linears reading the same input (Llama's q, k, v; gate and up), with one
  // entry collective for the group: forward gathers the input once under sequence
  // parallelism; backward sums the group's input gradients, then reduces (or reduce-scatters)
  // once. As for one column-parallel Linear, dinp holds no other gradient yet (zero). Each
  // pair of the backward group is (Linear, the gradient of its output).
  static void forward_group(Ctx& c, const std::vector<Linear*>& group, const void* inp);
  static void backward_group(Ctx& c, const std::vector<std::pair<Linear*, const void*>>& group, void* dinp,
                             const void* inp);

 private:
  enum class Mode { none, column, row };
  const void* entry_forward(Ctx& c, const void* inp);  // the whole input of a column-parallel product
  void product_forward(Ctx& c, void* out, const void* inp, const void* bias);
  void product_backward(Ctx& c, void* dinp, const void* dout, const void* inp);
  using Products = std::function<void(void* dinp, void* dweight)>;
  void grads(Ctx& c, void* dinp, const Products& products);

  LinearSpec spec_;
  const ParamEntry *w_ = nullptr, *b_ = nullptr;
  Mode mode_ = Mode::none;
  bool shared_ = false;  // its part is held by several ranks (ParamEntry::parts < tp)
  int64_t in_l_ = 0, out_l_ = 0;
  struct Saved {
    Act out;  // (rows, local out): kept per spec.keep (full recomputation rebuilds it)
  } saved_;
  Act gathered_, full_, full2_;  // sequence-parallel scratch: the gathered input, partial sums
  GemmQuantizer* quantizer_ = nullptr;
  Tensor partial_;  // (parts, in_l x out_l) fp32: a shared weight's per-call gradient
};

}  // namespace meshlm
