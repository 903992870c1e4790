// The stack: units in order through the residual stream, hooks around each, activations laid
// out per batch shape (the units plan their own buffers; the stack keeps the stage's input and
// the residual stream's gradient).
#include "model/model.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"
#include "model/family.h"

namespace meshlm {

namespace {

DType master_of(DType compute) { return compute == DType::fp64 ? DType::fp64 : DType::fp32; }

DType checked_compute(DType compute, const Backend& be) {
  MESHLM_CHECK(compute == DType::fp32 || compute == DType::fp64 || compute == DType::bf16 || compute == DType::fp16,
               std::string("model compute dtype must be fp32, fp64, bf16 or fp16, got ") + dtype_name(compute));
  for (Op op : {Op::matmul, Op::layernorm, Op::attention, Op::gelu, Op::residual, Op::embedding, Op::crossentropy,
                Op::rmsnorm, Op::rope, Op::swiglu})
    MESHLM_CHECK(be.supports(op, compute), std::string("backend ") + be.name() + " does not run " + op_name(op) +
                                               " in " + dtype_name(compute));
  return compute;
}

const Plan& checked_plan(const Plan& plan, const Communicator* tp) {
  plan.validate();
  const int group = tp ? tp->size() : 1;
  MESHLM_CHECK(plan.mesh.tp == group, "model: the plan's tp is " + std::to_string(plan.mesh.tp) +
                                          " but the tensor-parallel group has " + std::to_string(group) + " ranks");
  return plan;
}

std::vector<ParamDecl> declarations(const DecoderUnits& u) {
  std::vector<ParamDecl> d;
  if (u.embedding) u.embedding->declare(d);
  for (const auto& b : u.blocks) b->declare(d);
  if (u.head) u.head->declare(d);
  return d;
}

}  // namespace

Model::Model(const ModelConfig& cfg, Backend& backend, DType compute, const Plan& plan, Communicator* tp,
             int pp_rank, const WeightResidency& residency)
    : cfg_(cfg),
      plan_(checked_plan(plan, tp)),
      stage_(plan_.stage(pp_rank)),
      be_(backend),
      dt_(checked_compute(compute, backend)),
      tp_(tp, backend, compute),
      units_(decoder_units(cfg, stage_, plan_.mesh.tp)),
      w_(ParamTable(declarations(units_), plan_, tp ? tp->rank() : 0), backend, compute, residency) {
  stage_.chunks = stage_.resolved(cfg.n_layer);
  for (const LayerRange& r : stage_.chunks) chunk_end_.push_back(size_t(r.n) + (chunk_end_.empty() ? 0 : chunk_end_.back()));
  for (Unit* u : units()) u->bind(w_.table());
}

std::vector<Unit*> Model::units() const {
  std::vector<Unit*> v;
  if (units_.embedding) v.push_back(units_.embedding.get());
  for (const auto& b : units_.blocks) v.push_back(b.get());
  if (units_.head) v.push_back(units_.head.get());
  return v;
}

int64_t Model::tied_elems() const {
  const std::string name = tied_parameter(cfg_);
  if (name.empty() || !w_.table().contains(name)) return 0;
  const ParamEntry& e = w_.table().at(name);
  MESHLM_CHECK(e.offset == 0, "the tied " + name + " must lead the parameter table");
  return e.numel();
}

int64_t Model::first_offset(const Unit& u) const {
  int64_t lo = w_.table().total();
  for (const ParamEntry& e : w_.table().entries())
    if (e.group == u.name()) lo = std::min(lo, e.offset);
  return lo;
}

// Drawn on the host a slice at a time and uploaded (the stored part): a staging buffer the size
// of the whole would double the masters' memory at the start of the run.
void Model::init(uint64_t seed) {
  const int64_t n = params().numel(), chunk = std::min<int64_t>(n, int64_t(1) << 22);
  Tensor host({chunk}, master_dtype());  // [chunk]
  for (int64_t at = 0; at < n; at += chunk) {
    const int64_t len = std::min(chunk, n - at);
    TensorView part = host.view();
    part.shape = {len};
    const int64_t off = w_.master_begin() + at;
    init_params(w_.table(), seed, part, off);
    be_.upload(w_.master_at(off), host.data(), size_t(len) * dtype_size(master_dtype()));
  }
  update_compute_weights();
}

void Model::set_master(const ParamEntry& e, const float* local) {
  const int64_t lo = std::max(e.offset, w_.master_begin()), hi = std::min(e.offset + e.numel(), w_.master_end());
  if (lo < hi) be_.upload(master_at(lo), local + (lo - e.offset), size_t(hi - lo) * 4);
}

void Model::get_master(const ParamEntry& e, float* local) {
  const int64_t lo = std::max(e.offset, w_.master_begin()), hi = std::min(e.offset + e.numel(), w_.master_end());
  if (lo < hi) be_.download(local + (lo - e.offset), master_at(lo), size_t(hi - lo) * 4);
}

std::vector<Model::UnitSpan> Model::unit_spans() const {
  const int64_t tied = tied_elems();
  std::vector<UnitSpan> spans;
  for (Unit* u : units()) {
    UnitSpan s{u->name(), w_.table().total(), 0};
    for (const ParamEntry& e : w_.table().entries())
      if (e.group == u->name() && !(tied > 0 && e.offset < tied)) {
        s.lo = std::min(s.lo, e.offset);
        s.hi = std::max(s.hi, e.offset + e.numel());
      }
    if (s.lo >= s.hi) s.lo = s.hi = spans.empty() ? tied : spans.back().hi;  // a unit of no parameters of its own
    MESHLM_CHECK(spans.empty() || s.lo == spans.back().hi, "unit " + s.name + ": its parameters are not contiguous");
    spans.push_back(s);
  }
  return spans;
}

void Model::before_forward(const Unit& u) {
  const UnitRef ref{u.name(), first_offset(u)};
  if (residency_hooks_) residency_hooks_->before_forward(ref);
  if (hooks_) hooks_->before_forward(ref);
}

void Model::before_backward(const Unit& u) {
  const UnitRef ref{u.name(), first_offset(u)};
  if (residency_hooks_) residency_hooks_->before_backward(ref);
  if (hooks_) hooks_->before_backward(ref);
}

void Model::grads_final_from(int64_t offset) {
  if (residency_hooks_) residency_hooks_->grads_final_from(offset);
  if (hooks_) hooks_->grads_final_from(offset);
}

void Model::zero_grad() { be_.zero(grads().data(), grads().nbytes()); }

void Model::update_compute_weights(const WeightRounding& r, int64_t begin, int64_t end) {
  if (dt_ == master_dtype() || r.done_by_optimizer) return;
  begin = std::max(begin, w_.master_begin());  // sharded masters: only the shard can be rounded
  end = end < 0 ? w_.master_end() : std::min(end, w_.master_end());
  if (begin >= end) return;
  auto out = [&](int64_t off) { return w_.compute_at(off); };
  if (!r.stochastic) return be_.convert(dt_, out(begin), DType::fp32, master_at(begin), end - begin);
  for (const ParamEntry& e : w_.table().entries()) {
    const int64_t lo = std::max(e.offset, begin), hi = std::min(e.offset + e.numel(), end);
    if (lo >= hi) continue;
    // bits keyed by (name, element index in the parameter, step)
    const uint64_t stream = mix64(hash_name(e.name) ^ uint64_t(r.step));
    be_.convert_stochastic(dt_, out(lo), master_at(lo), hi - lo, r.seed, stream, lo - e.offset);
  }
}

void Model::master_from_compute_weights() {
  MESHLM_CHECK(dt_ != master_dtype(), "master_from_compute_weights: no 16-bit compute copy");
  const int64_t b = w_.master_begin();
  be_.convert(DType::fp32, master_at(b), dt_, w_.compute_at(b), w_.master_end() - b);
}

std::vector<Linear*> Model::block_linears() {
  std::vector<Linear*> v;
  for (const auto& b : units_.blocks)
    for (Linear* l : b->linears()) v.push_back(l);
  return v;
}

Linear* Model::head_linear() {
  if (!units_.head) return nullptr;
  const std::vector<Linear*> v = units_.head->linears();
  return v.empty() ? nullptr : v.front();
}

void Model::set_slots(int slots) {
  MESHLM_CHECK(slots >= 1, "set_slots: at least one slot");
  if (slots == slots_) return;
  slots_ = slots;
  B_cap_ = T_cap_ = 0;  // the next forward lays the activations out again
}

Dims Model::dims(int64_t B, int64_t T) const {
  const int64_t N = B * T;
  return {B, T, N, plan_.sequence_parallel ? N / plan_.mesh.tp : N};
}

Ctx Model::ctx(bool training) { return Ctx{be_, dt_, tp_, w_, acts_, d_, plan_.sequence_parallel, training}; }

void Model::ensure_activations(int64_t B, int64_t T) {
  MESHLM_CHECK(B > 0 && T > 0, "batch and sequence length must be positive");
  MESHLM_CHECK(T <= cfg_.max_seq_len, "sequence length " + std::to_string(T) + " exceeds the model's max_seq_len " +
                                          std::to_string(cfg_.max_seq_len));
  MESHLM_CHECK(!plan_.sequence_parallel || (B * T) % plan_.mesh.tp == 0,
               "sequence parallelism: batch x seq_len (" + std::to_string(B * T) + ") must be a multiple of tp");
  if (d_.B == B && d_.T == T && B_cap_ > 0) return;
  // Every unit lays out its buffers for (B, T); a shape within the capacity reuses the memory.
  d_ = dims(B, T);
  ActivationPlanner p(plan_.recompute);
  x0_.clear();
  for (int k = 0; k < chunks(); k++)  // (Ns, C): the embedding's output, or the previous stage's
    x0_.push_back(p.saved(d_.Ns * cfg_.n_embd));
  for (Unit* u : units()) u->plan(p, d_, plan_.sequence_parallel);
  dres_ = p.scratch("grad.residual", d_.Ns * cfg_.n_embd);  // (Ns, C)
  if (B * T <= B_cap_ * T_cap_ && T <= T_cap_) return acts_.relayout(p);
  B_cap_ = B;
  T_cap_ = T;
  acts_ = Activations(p, slots_, be_, dt_, master_dtype());
  if (units_.embedding) units_.embedding->set_token_slots(be_, slots_, d_.N);
  targets_ = Buffer(size_t(d_.N) * sizeof(int32_t), be_);
  has_grad_.assign(size_t(slots_ * chunks()), 0);
}

double Model::forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, float dloss_scale) {
  MESHLM_CHECK(stage_.first && stage_.last && chunks() == 1, "forward: this model is one pipeline stage (use forward_micro)");
  return forward_micro(0, 0, tokens, nullptr, targets, B, T, dloss_scale);
}

void Model::check_targets(const int32_t* targets, int64_t N) const {
  for (int64_t i = 0; i < N; i++)
    MESHLM_CHECK(targets[i] >= 0 && targets[i] < cfg_.vocab_size,
                 "target id " + std::to_string(targets[i]) + " is outside the vocabulary [0, " +
                     std::to_string(cfg_.vocab_size) + ")");
}

double Model::forward_micro(int chunk, int slot, const int32_t* tokens, const void* input, const int32_t* targets,
                            int64_t B, int64_t T, float dloss_scale) {
  MESHLM_CHECK(slot >= 0 && slot < slots_ && chunk >= 0 && chunk < chunks(),
               "forward_micro: chunk " + std::to_string(chunk) + " slot " + std::to_string(slot) + " of " +
                   std::to_string(chunks()) + " x " + std::to_string(slots_));
  ensure_activations(B, T);
  acts_.set_slot(slot);
  char& has_grad = has_grad_[size_t(chunk * slots_ + slot)];
  has_grad = 0;
  Ctx c = ctx(dloss_scale != 0.0f);  // only training steps feed the fp8 amax histories
  void* x0 = acts_.at(x0_[size_t(chunk)]);
  if (model_first(chunk)) {
    MESHLM_CHECK(tokens, "forward: the first stage needs tokens");
    before_forward(*units_.embedding);
    units_.embedding->forward(c, tokens, x0);
  } else {
    MESHLM_CHECK(input, "forward: a stage after the first needs the previous stage's output");
    be_.copy(x0, input, size_t(d_.Ns * cfg_.n_embd) * c.esz());
  }
  const void* x = x0;  // (Ns, C) the residual stream
  for (size_t i = chunk_begin(chunk); i < chunk_end_[size_t(chunk)]; i++) {
    before_forward(*units_.blocks[i]);
    units_.blocks[i]->forward(c, x, true);
    x = acts_.at(units_.blocks[i]->output());
  }
  if (!model_last(chunk)) {
    has_grad = dloss_scale != 0.0f;
    return 0.0;
  }
  before_forward(*units_.head);
  if (!targets) return units_.head->forward(c, x, nullptr, 0.0f);
  check_targets(targets, d_.N);
  has_grad = dloss_scale != 0.0f;
  be_.upload(targets_.data(), targets, size_t(d_.N) * sizeof(int32_t));
  return units_.head->forward(c, x, targets_.as<int32_t>(), dloss_scale);
}

KvCache Model::make_kv_cache() {
  MESHLM_CHECK(stage_.first && stage_.last && plan_.mesh.tp == 1, "a KV cache needs the whole model on one rank");
  const int64_t channels = cfg_.llama() ? cfg_.kv_heads() * cfg_.head_size() : cfg_.n_embd;
  return KvCache(be_, dt_, int64_t(units_.blocks.size()), cfg_.max_seq_len, channels);
}

std::vector<float> Model::decode(int32_t token, KvCache& cache) { return generate_step(&token, 1, cache); }

std::vector<float> Model::prefill(const int32_t* tokens, int64_t T, KvCache& cache) {
  MESHLM_CHECK(cache.length() == 0 && T > 0, "prefill: an empty KV cache and at least one token");
  return generate_step(tokens, T, cache);
}

// T tokens at positions cache.length() .. + T - 1 through every layer, their keys and values
// into the cache; the logits after the last.
std::vector<float> Model::generate_step(const int32_t* tokens, int64_t T, KvCache& cache) {
  MESHLM_CHECK(stage_.first && stage_.last && plan_.mesh.tp == 1, "generation: the whole model on one rank");
  MESHLM_CHECK(cache.length() + T <= cache.capacity(), "the KV cache is full (" + std::to_string(cache.capacity()) +
                                                           " positions, the model's max_seq_len)");
  ensure_activations(1, T);
  acts_.set_slot(0);
  has_grad_[0] = 0;
  Ctx c = ctx(false);
  c.d.pos0 = cache.length();
  c.kv = &cache;
  void* x0 = acts_.at(x0_[0]);
  units_.embedding->forward(c, tokens, x0);
  const void* x = x0;  // (T, C) the new positions' residual stream
  for (size_t i = 0; i < units_.blocks.size(); i++) {
    c.layer = int64_t(i);
    units_.blocks[i]->forward(c, x, true);
    x = acts_.at(units_.blocks[i]->output());
  }
  units_.head->forward(c, x, nullptr, 0.0f);
  cache.advance(T);
  return logits_at(0, T - 1);
}

void Model::backward_micro(int chunk, int slot, const void* doutput) {
  MESHLM_CHECK(slot >= 0 && slot < slots_ && chunk >= 0 && chunk < chunks() && d_.N > 0 &&
                   has_grad_[size_t(chunk * slots_ + slot)],
               "backward() needs a forward() with targets and a dloss_scale");
  has_grad_[size_t(chunk * slots_ + slot)] = 0;
  acts_.set_slot(slot);
  Ctx c = ctx(true);
  void* dres = acts_.at(dres_);  // (Ns, C) the gradient of the residual stream
  const auto& blocks = units_.blocks;
  const size_t b0 = chunk_begin(chunk), b1 = chunk_end_[size_t(chunk)];
  auto input_of = [&](size_t i) { return i > b0 ? acts_.at(blocks[i - 1]->output()) : acts_.at(x0_[size_t(chunk)]); };
  if (model_last(chunk)) {
    before_backward(*units_.head);
    units_.head->backward(c, input_of(b1), dres);
    grads_final_from(first_offset(*units_.head));
  } else {
    MESHLM_CHECK(doutput, "backward: a stage before the last needs the gradient of its output");
    be_.copy(dres, doutput, size_t(d_.Ns * cfg_.n_embd) * c.esz());
  }
  for (size_t i = b1; i-- > b0;) {
    BlockUnit& b = *blocks[i];
    before_backward(b);
    // Recomputation: what the block's forward did not keep, rebuilt from what it did.
    if (plan_.recompute == Recompute::full) b.forward(c, input_of(i), false);
    if (plan_.recompute == Recompute::selective) b.recompute_selective(c);
    b.backward(c, input_of(i), dres);
    grads_final_from(first_offset(b));
  }
  if (model_first(chunk)) {
    before_backward(*units_.embedding);
    units_.embedding->backward(c, dres);
  }
  // A later stage: dres holds the gradient of its input. Chunk 0's is the stage's last backward
  // of a micro-batch; every parameter of the stage is final from its start.
  if (chunk == 0) grads_final_from(0);
}

const void* Model::output(int chunk, int slot) const {
  MESHLM_CHECK(slot >= 0 && slot < slots_ && chunk >= 0 && chunk < chunks() && d_.N > 0, "output: no such slot");
  const size_t end = chunk_end_[size_t(chunk)];
  return acts_.at_slot(end == chunk_begin(chunk) ? x0_[size_t(chunk)] : units_.blocks[end - 1]->output(), slot);
}

const void* Model::input_grad() const { return acts_.at(dres_); }

int64_t Model::boundary_elems(int64_t B, int64_t T) const { return dims(B, T).Ns * cfg_.n_embd; }

std::vector<Cost> Model::cost(int64_t B, int64_t T) const {
  CostContext c{dims(B, T), dt_, master_dtype(), plan_.mesh.tp, plan_.sequence_parallel, plan_.recompute};
  std::vector<Cost> out;
  for (Unit* u : units()) u->cost(c, out);
  out.push_back({Cost::Kind::saved, "stage input", false, 0, 0, 0, dt_,
                 c.d.Ns * cfg_.n_embd * int64_t(dtype_size(dt_)), "", ""});
  return out;
}

ParamTable param_table(const ModelConfig& cfg, const Plan& plan, int pp_rank, int tp_rank) {
  return ParamTable(declarations(decoder_units(cfg, plan.stage(pp_rank), plan.mesh.tp)), plan, tp_rank);
}

ActivationLayoutBytes activation_layout(const ModelConfig& cfg, const Plan& plan, int pp_rank, DType dt, int64_t B,
                                        int64_t T) {
  plan.validate();
  const StageLayers stage = plan.stage(pp_rank);
  DecoderUnits u = decoder_units(cfg, stage, plan.mesh.tp);
  const ParamTable table(declarations(u), plan, 0);
  const int64_t N = B * T, Ns = plan.sequence_parallel ? N / plan.mesh.tp : N;
  const Dims d{B, T, N, Ns};
  // As Model::ensure_activations lays them out: each chunk's input, the units, the residual
  // stream's gradient.
  ActivationPlanner p(plan.recompute);
  for (size_t c = 0; c < stage.resolved(cfg.n_layer).size(); c++) p.saved(Ns * cfg.n_embd);
  std::vector<Unit*> units;
  if (u.embedding) units.push_back(u.embedding.get());
  for (auto& b : u.blocks) units.push_back(b.get());
  if (u.head) units.push_back(u.head.get());
  for (Unit* unit : units) {
    unit->bind(table);
    unit->plan(p, d, plan.sequence_parallel);
  }
  p.scratch("grad.residual", Ns * cfg.n_embd);
  const int64_t esz = int64_t(dtype_size(dt)), stat = int64_t(dtype_size(master_of(dt)));
  return {int64_t(p.saved_elems(false)) * esz + int64_t(p.saved_elems(true)) * stat,
          int64_t(p.scratch_elems(false)) * esz + int64_t(p.scratch_elems(true)) * stat};
}

double UnitCost::forward_flops() const {
  double f = 0;
  for (const Cost& c : ops)
    if (!c.backward) f += c.flops();
  return f;
}

std::vector<UnitCost> unit_costs(const ModelConfig& cfg, const Plan& plan, int pp_rank, DType dt, int64_t B,
                                 int64_t T) {
  plan.validate();
  DecoderUnits u = decoder_units(cfg, plan.stage(pp_rank), plan.mesh.tp);
  const ParamTable table(declarations(u), plan, 0);
  const int64_t N = B * T;
  const CostContext c{{B, T, N, plan.sequence_parallel ? N / plan.mesh.tp : N}, dt, master_of(dt), plan.mesh.tp,
                      plan.sequence_parallel, plan.recompute};
  std::vector<UnitCost> out;
  auto add = [&](Unit& unit) {
    unit.bind(table);
    out.push_back({unit.name(), {}});
    unit.cost(c, out.back().ops);
  };
  if (u.embedding) add(*u.embedding);
  for (auto& b : u.blocks) add(*b);
  if (u.head) add(*u.head);
  return out;
}

std::vector<Model::TensorSpan> Model::tensor_spans() const {
  std::vector<TensorSpan> spans;
  const size_t esz = dtype_size(master_dtype());
  const WeightResidency& r = w_.residency();
  const bool whole = !r.shard_masters && !r.window_grads;  // else each rank holds a shard: not reported
  for (const ParamEntry& e : w_.table().entries()) {
    if (!whole) break;
    spans.push_back({e.group, "weights", e.name, master_dtype(),
                     static_cast<const char*>(params().data()) + size_t(e.offset) * esz, e.numel()});
    spans.push_back({e.group, "grads", e.name, master_dtype(),
                     static_cast<const char*>(grads().data()) + size_t(e.offset) * esz, e.numel()});
  }
  if (d_.N == 0) return spans;  // no forward yet
  if (units_.embedding) spans.push_back({"embedding", "activations", "input", dt_, acts_.at(x0_[0]), x0_[0].n});
  for (Unit* u : units()) {
    std::vector<std::pair<std::string, Act>> acts;
    u->activations(acts);
    for (const auto& [name, a] : acts)  // recomputed buffers are not kept: not reported
      if (!a.scratch) spans.push_back({u->name(), "activations", name, a.stat ? master_dtype() : dt_, acts_.at(a), a.n});
  }
  return spans;
}

std::vector<float> Model::logits_at(int64_t b, int64_t t) const {
  MESHLM_CHECK(units_.head, "logits_at: this pipeline stage has no LM head");
  MESHLM_CHECK(!tp_.active(), "logits_at: the logits are split across the tensor-parallel ranks (sample on one rank)");
  MESHLM_CHECK(b < d_.B && t < d_.T, "logits_at: position outside the last forward");
  const int64_t Vp = cfg_.padded_vocab_size();
  std::vector<float> out(static_cast<size_t>(Vp));
  Tensor row({Vp}, DType::fp32, be_);
  be_.convert(DType::fp32, row.data(), dt_,
              static_cast<const char*>(acts_.at(units_.head->logits())) + size_t((b * d_.T + t) * Vp) * dtype_size(dt_),
              Vp);
  be_.download(out.data(), row.data(), size_t(Vp) * 4);
  return out;
}

}  // namespace meshlm
