#include "model/linear.h"

#include "core/error.h"

namespace meshlm {

Linear::Linear(LinearSpec spec) : spec_(std::move(spec)) {
  if (spec_.weight.empty()) spec_.weight = spec_.name + ".weight";
  if (spec_.key.empty()) spec_.key = spec_.name;
}

void Linear::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  if (spec_.tied) return;  // declared by its owner
  const Shape w = spec_.layout == WeightLayout::in_out ? Shape{spec_.in, spec_.out} : Shape{spec_.out, spec_.in};
  out.push_back({spec_.weight, w, spec_.init_std, 0, true, {}, -1, group, false});
  if (spec_.bias) out.push_back({spec_.name + ".bias", {spec_.out}, 0, 0, false, {}, -1, group, false});
}

void Linear::bind(const ParamTable& table) {
  w_ = &table.at(spec_.weight);
  b_ = spec_.bias ? &table.at(spec_.name + ".bias") : nullptr;
  const bool in_out = spec_.layout == WeightLayout::in_out;
  in_l_ = in_out ? w_->shape[0] : w_->shape[1];
  out_l_ = in_out ? w_->shape[1] : w_->shape[0];
  // The split of W, read as a split of the product: columns of (in, out) or rows of (out, in)
  // are this rank's outputs; rows of (in, out) its inputs.
  mode_ = Mode::none;
  if (w_->shard == Sharding::rows) mode_ = in_out ? Mode::row : Mode::column;
  if (w_->shard == Sharding::columns) mode_ = in_out ? Mode::column : Mode::row;
  // A column-parallel weight whose parts several ranks share (a kv head replicated over the
  // ranks of its query group): each rank's weight gradient covers only its own outputs' use.
  shared_ = w_->parts < w_->tp;
  MESHLM_CHECK(!shared_ || (mode_ == Mode::column && w_->groups == 1 && !b_),
               spec_.weight + ": only a column-parallel weight without bias can be shared by tensor-parallel ranks");
}

// The input gradient and the weight gradient of one call by `products(dinp, dweight)`. A part
// several ranks share: each rank's partial weight gradient in its part's slot of a (parts,
// local) buffer, all-reduced over the group, its own slot added to the gradient. Per call, as
// the sequence-parallel layernorm's (summing the accumulated gradient would count earlier
// micro-batches more than once).
void Linear::grads(Ctx& c, void* dinp, const Products& products) {
  if (!shared_) return products(dinp, c.w.grad(*w_));
  const int64_t n = in_l_ * out_l_, parts = w_->parts;
  if (partial_.numel() < parts * n) partial_ = Tensor({parts * n}, DType::fp32, c.be);
  float* all = partial_.as<float>();  // (parts, n) fp32
  float* mine = all + w_->part() * n;
  c.be.zero(all, size_t(parts * n) * 4);
  products(dinp, mine);
  c.tp.sum_partial_grads(all, parts * n);
  c.be.accumulate(DType::fp32, c.w.grad(*w_), mine, n);
}

void Linear::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  const int64_t rows = mode_ == Mode::row && sp ? d.Ns : d.N;
  saved_.out = p.keep(spec_.key + ".out", rows * out_l_, spec_.keep);
  if (!sp) return;
  // Sequence parallel: the gathered input (transient, gathered again in backward), the
  // partial sums before a reduce-scatter and the gathered output gradients. Every layer shares
  // them: (N, C) each.
  if (mode_ == Mode::column) {
    gathered_ = p.scratch("tp.gathered", d.N * in_l_);
    full2_ = p.scratch("tp.partial_input_grad", d.N * in_l_);
  }
  if (mode_ == Mode::row) full_ = p.scratch("tp.full", d.N * out_l_);
}

const void* Linear::entry_forward(Ctx& c, const void* inp) {
  if (mode_ != Mode::column || !c.sequence_parallel) return inp;  // copy: the input as it is
  c.tp.gather_forward(c.at(gathered_), inp, c.d.Ns * in_l_);
  return c.at(gathered_);
}

void Linear::product_forward(Ctx& c, void* out, const void* x, const void* bias) {
  const void* w = c.w.weight(*w_);
  const GemmShape g{c.d.N, in_l_, out_l_, spec_.layout};
  if (quantizer_ && quantizer_->runs_products()) return quantizer_->forward_product(c.be, g, out, x, w, bias, c.training);
  if (quantizer_) quantizer_->forward(c.be, g, x, w, c.training);
  c.be.matmul_forward(c.dt, out, x, w, bias, c.d.N, in_l_, out_l_, spec_.layout);
}

// With a quantizer, the bias gradient comes from the unquantized output gradient, and the
// input and weight gradients either from the quantizer's own products or from the operands it
// hands back: one call when both products read the same output gradient, else one each.
void Linear::product_backward(Ctx& c, void* dinp, const void* dout, const void* x) {
  const void* w = c.w.weight(*w_);
  void* dbias = b_ ? c.w.grad(*b_) : nullptr;
  const int64_t N = c.d.N;
  auto matmul = [&](void* di, void* dw, void* db, const void* d, const void* xx, const void* ww) {
    c.be.matmul_backward(c.dt, di, dw, db, d, xx, ww, N, in_l_, out_l_, spec_.layout);
  };
  if (!quantizer_) return grads(c, dinp, [&](void* di, void* dw) { matmul(di, dw, dbias, dout, x, w); });
  if (dbias) matmul(nullptr, nullptr, dbias, dout, x, w);
  const GemmShape g{N, in_l_, out_l_, spec_.layout};
  if (quantizer_->runs_products())
    return grads(c, dinp, [&](void* di, void* dw) { quantizer_->backward_products(c.be, g, di, dw, dout, x, w); });
  const GemmQuantizer::Backward o = quantizer_->backward(c.be, g, dout, x, w);
  if (o.dout_d == o.dout_w) return grads(c, dinp, [&](void* di, void* dw) { matmul(di, dw, nullptr, o.dout_d, o.x_w, o.w_d); });
  if (dinp) matmul(dinp, nullptr, nullptr, o.dout_d, o.x_w, o.w_d);
  grads(c, nullptr, [&](void*, void* dw) { matmul(nullptr, dw, nullptr, o.dout_w, o.x_w, w); });
}

void Linear::forward(Ctx& c, const void* inp) {
  if (mode_ != Mode::row) {
    product_forward(c, c.at(saved_.out), entry_forward(c, inp), b_ ? c.w.weight(*b_) : nullptr);
    return;
  }
  // Row-parallel: partial sums, then the exit collective; rank 0 alone adds the bias.
  const void* bias = b_ && c.tp.rank() == 0 ? c.w.weight(*b_) : nullptr;
  const int64_t n = c.d.N * out_l_;
  if (c.sequence_parallel) {
    product_forward(c, c.at(full_), inp, bias);
    c.tp.scatter_forward(c.at(saved_.out), c.at(full_), n);
  } else {
    product_forward(c, c.at(saved_.out), inp, bias);
    c.tp.reduce_forward(c.at(saved_.out), n);
  }
}

void Linear::backward(Ctx& c, void* dinp, const void* dout, const void* inp) {
  if (mode_ == Mode::row) {  // the output gradient is replicated (gathered from the ranks' rows)
    if (c.sequence_parallel) {
      c.tp.scatter_backward(c.at(full_), dout, c.d.Ns * out_l_);
      dout = c.at(full_);
    }
    product_backward(c, dinp, dout, inp);
    return;
  }
  // Column-parallel: this rank's outputs give a part of the input gradient, summed over the
  // group (reduce-scattered to this rank's rows under sequence parallelism).
  const void* x = entry_forward(c, inp);
  if (mode_ == Mode::column && c.sequence_parallel) {
    c.zero(full2_, c.d.N * in_l_);
    product_backward(c, c.at(full2_), dout, x);
    c.tp.gather_backward(dinp, c.at(full2_), c.d.N * in_l_);
    return;
  }
  product_backward(c, dinp, dout, x);
  if (mode_ == Mode::column) c.tp.copy_backward(dinp, c.d.N * in_l_);
}

void Linear::forward_group(Ctx& c, const std::vector<Linear*>& group, const void* inp) {
  const void* x = group.front()->entry_forward(c, inp);
  for (Linear* l : group) {
    MESHLM_CHECK(l->mode_ != Mode::row && l->in_l_ == group.front()->in_l_, l->name() + ": not of its column group");
    l->product_forward(c, c.at(l->saved_.out), x, l->b_ ? c.w.weight(*l->b_) : nullptr);
  }
}

void Linear::backward_group(Ctx& c, const std::vector<std::pair<Linear*, const void*>>& group, void* dinp,
                            const void* inp) {
  Linear& first = *group.front().first;
  const void* x = first.entry_forward(c, inp);  // gathered again under sequence parallelism
  const int64_t n = c.d.N * first.in_l_;
  const bool split = first.mode_ == Mode::column;
  if (split && c.sequence_parallel) {
    c.zero(first.full2_, n);
    for (const auto& [l, dout] : group) l->product_backward(c, c.at(first.full2_), dout, x);
    c.tp.gather_backward(dinp, c.at(first.full2_), n);
    return;
  }
  for (const auto& [l, dout] : group) l->product_backward(c, dinp, dout, x);
  if (split) c.tp.copy_backward(dinp, n);
}

void Linear::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t N = c.d.N, esz = int64_t(dtype_size(c.dt));
  const bool sp = c.sequence_parallel && c.tp > 1;
  auto gemm = [&](const char* dir, bool bwd, int64_t m, int64_t n, int64_t k) {
    Cost r;
    r.kind = Cost::Kind::gemm;
    r.what = spec_.name + " " + dir;
    r.backward = bwd;
    r.m = m, r.n = n, r.k = k, r.dt = c.dt;
    r.rows = N, r.in = in_l_, r.out = out_l_, r.out_in = spec_.layout == WeightLayout::out_in;
    out.push_back(r);
  };
  auto coll = [&](const char* what, bool bwd, int64_t bytes) {
    Cost r;
    r.kind = Cost::Kind::collective;
    r.what = spec_.name + (bwd ? " backward" : " forward");
    r.backward = bwd;
    r.collective = what;
    r.axis = "tp";
    r.bytes = bytes;
    out.push_back(r);
  };
  gemm("forward", false, N, out_l_, in_l_);
  gemm("input gradient", true, N, in_l_, out_l_);
  gemm("weight gradient", true, in_l_, out_l_, N);
  if (c.tp > 1 && mode_ == Mode::row) {
    coll(sp ? "reduce_scatter" : "all_reduce", false, N * out_l_ * 4);
    if (sp) coll("all_gather", true, N * out_l_ * esz);
  }
  if (c.tp > 1 && shared_)  // the shared part's weight gradient, summed over the group per call
    coll("all_reduce", true, int64_t(w_->parts) * in_l_ * out_l_ * 4);
  if (c.tp > 1 && mode_ == Mode::column && !spec_.entry_shared) {
    if (sp) {
      coll("all_gather", false, N * in_l_ * esz);  // the input's rows, forward and again in backward
      coll("all_gather", true, N * in_l_ * esz);
    }
    coll(sp ? "reduce_scatter" : "all_reduce", true, N * in_l_ * 4);
  }
  const int64_t rows = mode_ == Mode::row && sp ? c.d.Ns : N;
  c.saved(out, spec_.name + " output", spec_.keep, rows * out_l_ * esz);
}

}  // namespace meshlm
