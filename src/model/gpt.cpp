// The GPT-2 forward and backward passes, as a sequence of kernel calls. Activation offsets are
// computed for a (B, T) capacity once; a smaller (B, T) reuses the same buffers (the kernels
// see contiguous (B, T, ...) arrays laid out for the actual B and T).
#include "model/gpt.h"

#include <cstring>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

namespace {
DType master_of(DType compute) { return compute == DType::fp64 ? DType::fp64 : DType::fp32; }
}  // namespace

Gpt::Gpt(const ModelConfig& cfg, Backend& backend, DType compute, Communicator* tp, const StageLayers& stage)
    : cfg_(cfg),
      stage_(stage),
      be_(backend),
      dtype_(compute),
      esz_(dtype_size(compute)),
      master_esz_(dtype_size(master_of(compute))),
      table_(cfg, tp ? tp->size() : 1, tp ? tp->rank() : 0, stage),
      tp_(tp && tp->size() > 1 ? tp : nullptr) {
  MESHLM_CHECK(compute == DType::fp32 || compute == DType::fp64 || compute == DType::bf16 ||
                   compute == DType::fp16,
               std::string("model compute dtype must be fp32, fp64, bf16 or fp16, got ") +
                   dtype_name(compute));
  for (Op op : {Op::matmul, Op::layernorm, Op::attention, Op::gelu, Op::residual, Op::embedding,
                Op::crossentropy})
    MESHLM_CHECK(backend.supports(op, compute), std::string("backend ") + backend.name() +
                                                    " does not run " + op_name(op) + " in " +
                                                    dtype_name(compute));
  if (stage_.n_layers < 0) stage_.n_layers = cfg.n_layer - stage_.first_layer;
  params_ = Tensor({table_.total()}, master_of(compute), be_);
  grads_ = Tensor({table_.total()}, master_of(compute), be_);
  if (compute != master_of(compute)) compute_ = Tensor({table_.total()}, compute, be_);
}

void* Gpt::param(const std::string& name) {
  return static_cast<char*>(params_.data()) + table_.at(name).offset * master_esz_;
}

const void* Gpt::weight(const std::string& name) {
  if (dtype_ == params_.dtype()) return param(name);
  return static_cast<char*>(compute_.data()) + table_.at(name).offset * esz_;
}

void* Gpt::grad(const std::string& name) {
  return static_cast<char*>(grads_.data()) + table_.at(name).offset * master_esz_;
}

void Gpt::init(uint64_t seed) {
  Tensor host({table_.total()}, params_.dtype());  // drawn on the host, then uploaded
  init_params(table_, seed, host.view());
  be_.upload(params_.data(), host.data(), host.nbytes());
  update_compute_weights();
}

void Gpt::zero_grad() { be_.zero(grads_.data(), grads_.nbytes()); }

void Gpt::update_compute_weights(const WeightRounding& r, int64_t begin, int64_t end) {
  if (dtype_ == params_.dtype()) return;
  if (end < 0) end = table_.total();
  const float* master = params_.as<float>();
  uint16_t* out = static_cast<uint16_t*>(compute_.data());
  if (!r.stochastic) return be_.convert(dtype_, out + begin, DType::fp32, master + begin, end - begin);
  for (const ParamEntry& e : table_.entries()) {
    const int64_t lo = std::max(e.offset, begin), hi = std::min(e.offset + e.numel(), end);
    if (lo >= hi) continue;
    // bits keyed by (name, element index in the parameter, step)
    const uint64_t stream = mix64(hash_name(e.name) ^ uint64_t(r.step));
    be_.convert_stochastic(dtype_, out + lo, master + lo, hi - lo, r.seed, stream, lo - e.offset);
  }
}

void Gpt::master_from_compute_weights() {
  MESHLM_CHECK(dtype_ != params_.dtype(), "master_from_compute_weights: no 16-bit compute copy");
  be_.convert(DType::fp32, params_.data(), dtype_, compute_.data(), table_.total());
}

void Gpt::enable_fp8(const Fp8ScalingConfig& cfg) {
  MESHLM_CHECK(dtype_ == DType::bf16, "fp8 needs the bf16 compute dtype");
  fp8_.clear();
  B_cap_ = T_cap_ = 0;  // the next forward allocates the quantized-operand scratch too
  for (int64_t i = 0; i < 4 * cfg_.n_layer; i++)
    fp8_.push_back({Fp8Scale(DType::fp8_e4m3, cfg), Fp8Scale(DType::fp8_e4m3, cfg),
                    Fp8Scale(DType::fp8_e5m2, cfg)});
}

void Gpt::end_fp8_step() {
  auto record = [](Fp8Scale& s, float& amax) {
    if (std::isfinite(amax)) s.record_amax(amax);  // an inf is the loss's problem, not the scale's
    amax = 0;
  };
  for (Fp8Site& s : fp8_) {
    record(s.x, s.x_amax);
    record(s.w, s.w_amax);
    record(s.g, s.g_amax);
  }
}

std::vector<float> Gpt::fp8_step_amaxes() const {
  std::vector<float> a;
  for (const Fp8Site& s : fp8_) a.insert(a.end(), {s.x_amax, s.w_amax, s.g_amax});
  return a;
}

void Gpt::set_fp8_step_amaxes(const std::vector<float>& a) {
  MESHLM_CHECK(a.size() == 3 * fp8_.size(), "fp8: wrong number of amaxes");
  for (size_t i = 0; i < fp8_.size(); i++) {
    fp8_[i].x_amax = a[3 * i];
    fp8_[i].w_amax = a[3 * i + 1];
    fp8_[i].g_amax = a[3 * i + 2];
  }
}

nlohmann::json Gpt::fp8_state() const {
  nlohmann::json j = nlohmann::json::array();
  for (const Fp8Site& s : fp8_) j.push_back({s.x.to_json(), s.w.to_json(), s.g.to_json()});
  return j;
}

void Gpt::set_fp8_state(const nlohmann::json& j) {
  MESHLM_CHECK(j.is_array() && j.size() == fp8_.size(), "fp8 state: expected " +
                                                          std::to_string(fp8_.size()) + " sites");
  for (size_t i = 0; i < fp8_.size(); i++) {
    fp8_[i].x.from_json(j[i].at(0));
    fp8_[i].w.from_json(j[i].at(1));
    fp8_[i].g.from_json(j[i].at(2));
  }
}

float Gpt::fp8_scale(const Fp8Scale& s, const uint16_t* x, int64_t n) const {
  return s.has_history() ? s.pow2_scale() : s.pow2_scale_for(be_.amax(DType::bf16, x, n));
}

float* Gpt::scratch_f32(int64_t n) {
  if (tp_scratch_.numel() < n) tp_scratch_ = Tensor({n}, DType::fp32, be_);
  return tp_scratch_.as<float>();
}

void Gpt::tp_all_reduce(void* buf, int64_t n) {
  tp_bytes_ += n * 4;  // the fp32 payload of the all-reduce
  if (dtype_ == DType::fp32 || dtype_ == DType::fp64) {
    MESHLM_CHECK(dtype_ == DType::fp32, "tensor parallelism runs fp32 or 16-bit models");
    tp_->all_reduce(buf, n, DType::fp32);
    return;
  }
  // 16-bit activations are summed in fp32 and rounded once.
  float* f = scratch_f32(n);
  be_.convert(DType::fp32, f, dtype_, buf, n);
  tp_->all_reduce(f, n, DType::fp32);
  be_.convert(dtype_, buf, DType::fp32, f, n);
}

void Gpt::enable_sequence_parallel() {
  MESHLM_CHECK(tp_ != nullptr, "sequence parallelism needs tensor parallelism (tp > 1)");
  sp_ = true;
  B_cap_ = T_cap_ = 0;  // the next forward lays the activations out for Ns rows
}

void Gpt::seq_gather(void* full, const void* part, int64_t n) {
  tp_bytes_ += n * tp_size() * int64_t(esz_);
  tp_->all_gather(part, full, std::vector<int64_t>(size_t(tp_size()), n), dtype_);
}

void Gpt::seq_reduce_scatter(void* part, const void* full, int64_t n) {
  tp_bytes_ += n * 4;
  const int64_t each = n / tp_size();
  const std::vector<int64_t> counts(size_t(tp_size()), each);
  if (dtype_ == DType::fp32) return tp_->reduce_scatter(full, part, counts, DType::fp32);
  float* f = scratch_f32(n + each);  // 16-bit: summed in fp32, rounded once
  be_.convert(DType::fp32, f, dtype_, full, n);
  tp_->reduce_scatter(f, f + n, counts, DType::fp32);
  be_.convert(dtype_, part, DType::fp32, f + n, each);
}

void Gpt::layernorm_backward(const std::string& prefix, void* dinp, const void* dout, const void* inp,
                             const void* mean, const void* rstd, int64_t Ns) {
  const int64_t C = cfg_.n_embd;
  float* dw = static_cast<float*>(grad(prefix + "weight"));
  float* db = static_cast<float*>(grad(prefix + "bias"));
  if (!sp_) {
    be_.layernorm_backward(dtype_, dinp, dw, db, dout, inp, weight(prefix + "weight"), mean, rstd, Ns, C);
    return;
  }
  // Sequence parallel: this rank's rows give a partial weight and bias gradient. It is summed
  // over the tp group on its own (in scratch), then added: summing the accumulated gradient
  // would count earlier micro-batches tp times.
  if (sp_ln_grads_.numel() < 2 * C) sp_ln_grads_ = Tensor({2 * C}, DType::fp32, be_);
  float* part = sp_ln_grads_.as<float>();  // (2C) partial weight and bias gradients
  be_.zero(part, size_t(2 * C) * 4);
  be_.layernorm_backward(dtype_, dinp, part, part + C, dout, inp, weight(prefix + "weight"), mean, rstd, Ns, C);
  tp_->all_reduce(part, 2 * C, DType::fp32);
  be_.accumulate(DType::fp32, dw, part, C);
  be_.accumulate(DType::fp32, db, part + C, C);
}

void Gpt::block_matmul_forward(int64_t l, int k, void* out, const void* inp, const std::string& w,
                               int64_t N, int64_t C, int64_t OC) {
  // Tensor parallel: sites 0 and 2 (c_attn, c_fc) are column-parallel: a replicated input, this
  // rank's output columns, nothing to communicate. Sites 1 and 3 (the projections) are
  // row-parallel: this rank's input columns give a partial output, summed across the tp ranks;
  // their (replicated) bias is added by rank 0 alone so the sum holds it once.
  const bool row_parallel = tp_ && (k == 1 || k == 3);
  const void* bias = row_parallel && tp_->rank() != 0 ? nullptr : weight(w + ".bias");
  if (row_parallel && sp_) {  // sequence parallel: the sum reduce-scattered to this rank's rows
    block_matmul_forward_local(l, k, act(off_.full), inp, w, bias, N, C, OC);
    seq_reduce_scatter(out, act(off_.full), N * OC);
    return;
  }
  block_matmul_forward_local(l, k, out, inp, w, bias, N, C, OC);
  if (row_parallel) tp_all_reduce(out, N * OC);
}

void Gpt::block_matmul_forward_local(int64_t l, int k, void* out, const void* inp, const std::string& w,
                                     const void* bias, int64_t N, int64_t C, int64_t OC) {
  if (fp8_.empty())
    return be_.matmul_forward(dtype_, out, inp, weight(w + ".weight"), bias, N, C, OC, WeightLayout::in_out);
  Fp8Site& s = fp8_[size_t(l * 4 + k)];
  auto* xq = static_cast<uint16_t*>(fp8_a_.data());  // (N, C)
  auto* wq = static_cast<uint16_t*>(fp8_b_.data());  // (C, OC)
  const auto* x = static_cast<const uint16_t*>(inp);
  const auto* wt = static_cast<const uint16_t*>(weight(w + ".weight"));
  const float ax = be_.fake_quantize(DType::fp8_e4m3, xq, x, N * C, fp8_scale(s.x, x, N * C));
  const float aw = be_.fake_quantize(DType::fp8_e4m3, wq, wt, C * OC, fp8_scale(s.w, wt, C * OC));
  if (training_forward_) {
    s.x_amax = std::max(s.x_amax, ax);
    s.w_amax = std::max(s.w_amax, aw);
  }
  be_.matmul_forward(dtype_, out, xq, wq, bias, N, C, OC, WeightLayout::in_out);
}

void Gpt::block_matmul_backward(int64_t l, int k, void* dinp, const std::string& w,
                                const void* dout, const void* inp, int64_t N, int64_t C,
                                int64_t OC) {
  // Column-parallel: each rank's columns contribute a part of the input gradient (dinp was
  // zeroed for this call): the sum over the tp ranks is the whole (reduce-scattered to this
  // rank's rows under sequence parallelism). Row-parallel: the output gradient is replicated
  // (gathered from the ranks' rows under sequence parallelism); nothing else to do.
  const bool column_parallel = tp_ && (k == 0 || k == 2);
  if (tp_ && sp_ && !column_parallel) {
    seq_gather(act(off_.full), dout, N * OC / tp_size());
    dout = act(off_.full);
  }
  if (column_parallel && sp_) {
    be_.zero(act(off_.full2), size_t(N * C) * esz_);
    block_matmul_backward_local(l, k, act(off_.full2), w, dout, inp, N, C, OC);
    seq_reduce_scatter(dinp, act(off_.full2), N * C);
    return;
  }
  block_matmul_backward_local(l, k, dinp, w, dout, inp, N, C, OC);
  if (column_parallel) tp_all_reduce(dinp, N * C);
}

void Gpt::block_matmul_backward_local(int64_t l, int k, void* dinp, const std::string& w,
                                      const void* dout, const void* inp, int64_t N, int64_t C,
                                      int64_t OC) {
  void* dw = grad(w + ".weight");
  void* db = grad(w + ".bias");
  if (fp8_.empty())
    return be_.matmul_backward(dtype_, dinp, dw, db, dout, inp, weight(w + ".weight"), N, C, OC,
                               WeightLayout::in_out);
  Fp8Site& s = fp8_[size_t(l * 4 + k)];
  // The operands as forward saw them (same scales until end_fp8_step), and dout in e5m2.
  auto* xq = static_cast<uint16_t*>(fp8_a_.data());  // (N, C), then (N, OC) for dout
  auto* wq = static_cast<uint16_t*>(fp8_b_.data());  // (C, OC), then (N, C) for inp
  const auto* x = static_cast<const uint16_t*>(inp);
  const auto* wt = static_cast<const uint16_t*>(weight(w + ".weight"));
  const auto* g = static_cast<const uint16_t*>(dout);
  be_.fake_quantize(DType::fp8_e4m3, wq, wt, C * OC, fp8_scale(s.w, wt, C * OC));
  uint16_t* gq = xq;
  const float ag = be_.fake_quantize(DType::fp8_e5m2, gq, g, N * OC, fp8_scale(s.g, g, N * OC));
  s.g_amax = std::max(s.g_amax, ag);
  uint16_t* xq2 = static_cast<uint16_t*>(fp8_b_.data()) + C * OC;  // (N, C)
  be_.fake_quantize(DType::fp8_e4m3, xq2, x, N * C, fp8_scale(s.x, x, N * C));
  be_.matmul_backward(dtype_, dinp, dw, db, gq, xq2, wq, N, C, OC, WeightLayout::in_out);
}

void Gpt::set_slots(int slots) {
  MESHLM_CHECK(slots >= 1, "set_slots: at least one slot");
  if (slots == slots_) return;
  slots_ = slots;
  B_cap_ = T_cap_ = 0;  // the next forward lays the activations out again
}

void Gpt::set_recompute(Recompute r) {
  recompute_ = r;
  B_cap_ = T_cap_ = 0;
}

Recompute recompute_from_name(const std::string& name) {
  if (name == "none") return Recompute::none;
  if (name == "selective") return Recompute::selective;
  if (name == "full") return Recompute::full;
  throw Error("recompute must be none, selective or full, not '" + name + "'");
}

const char* recompute_name(Recompute r) {
  return r == Recompute::none ? "none" : r == Recompute::selective ? "selective" : "full";
}

void Gpt::ensure_activations(int64_t B, int64_t T) {
  MESHLM_CHECK(B > 0 && T > 0, "batch and sequence length must be positive");
  MESHLM_CHECK(T <= cfg_.max_seq_len, "sequence length " + std::to_string(T) +
                                          " exceeds the model's max_seq_len " +
                                          std::to_string(cfg_.max_seq_len));
  if (B * T <= B_cap_ * T_cap_ && T <= T_cap_) {
    B_ = B;
    T_ = T;
    return;
  }
  B_ = B_cap_ = B;
  T_ = T_cap_ = T;
  const size_t N = size_t(B * T), C = size_t(cfg_.n_embd), Vp = size_t(cfg_.padded_vocab_size());
  // Per tensor-parallel rank: Cl = C / tp channels of attention (NHl heads) and 4 Cl of the MLP.
  const size_t Cl = C / size_t(tp_size()), NHl = size_t(cfg_.n_head / tp_size());
  // Sequence parallel: the layernorm/residual regions hold Ns = N / tp rows of this rank.
  MESHLM_CHECK(!sp_ || N % size_t(tp_size()) == 0,
               "sequence parallelism: batch x seq_len (" + std::to_string(N) + ") must be a multiple of tp");
  const size_t Ns = sp_ ? N / size_t(tp_size()) : N;
  // Four regions: saved activations and statistics (one copy per slot), and scratch of each
  // (shared: backward's temporaries and whatever recomputation rebuilds).
  size_t saved = 0, saved_stats = 0, scratch = 0, scratch_stats = 0;
  auto take_in = [](size_t& end, size_t n) {
    size_t o = end;
    end += (n + 31) / 32 * 32;  // keep every buffer 64-byte aligned (32 elements of >= 2 bytes)
    return o;
  };
  auto take = [&](size_t n) { return take_in(saved, n); };              // compute dtype
  auto take_stat = [&](size_t n) { return take_in(saved_stats, n); };  // master dtype
  auto temp = [&](size_t n) { return take_in(scratch, n) | kScratch; };
  auto temp_stat = [&](size_t n) { return take_in(scratch_stats, n) | kScratch; };
  // A block's internal buffer: saved per layer, or, when backward recomputes it, one scratch
  // buffer that every layer reuses.
  auto inner = [&](std::vector<size_t>& v, size_t n, bool recomputed, bool is_stat = false) {
    if (!recomputed) v.push_back(is_stat ? take_stat(n) : take(n));
    else v.push_back(!v.empty() ? v.front() : is_stat ? temp_stat(n) : temp(n));
  };
  const bool full = recompute_ == Recompute::full;
  const bool core = recompute_ != Recompute::none;  // attention core and GELU recomputed
  Offsets o;
  o.encoded = take(Ns * C);  // (Ns, C): the embedding's output, or the previous stage's
  // Sequence parallel: the gathered (N, C) input of a column-parallel product is transient,
  // gathered again in backward (not saved per layer: that would undo the memory saving).
  const size_t gathered = sp_ ? temp(N * C) : 0;
  for (int64_t i = 0; i < stage_.n_layers; i++) {
    inner(o.ln1, Ns * C, full);  // (Ns, C)
    o.ln1_full.push_back(sp_ ? gathered : o.ln1.back());  // (B, T, C) gathered
    inner(o.ln1_mean, Ns, full, true);  // (Ns)
    inner(o.ln1_rstd, Ns, full, true);  // (Ns)
    inner(o.qkv, N * 3 * Cl, full);  // (B, T, 3C/tp)
    inner(o.atty, N * Cl, core);  // (B, T, C/tp)
    inner(o.lse, N * NHl, core, true);  // (B, NH/tp, T)
    inner(o.attproj, Ns * C, full);  // (Ns, C)
    inner(o.res2, Ns * C, full);  // (Ns, C)
    inner(o.ln2, Ns * C, full);  // (Ns, C)
    o.ln2_full.push_back(sp_ ? gathered : o.ln2.back());  // (B, T, C) gathered
    inner(o.ln2_mean, Ns, full, true);  // (Ns)
    inner(o.ln2_rstd, Ns, full, true);  // (Ns)
    inner(o.fch, N * 4 * Cl, full);  // (B, T, 4C/tp)
    inner(o.fch_gelu, N * 4 * Cl, core);  // (B, T, 4C/tp)
    inner(o.fcproj, Ns * C, full);  // (Ns, C)
    o.res3.push_back(take(Ns * C));  // (Ns, C) the block's output: always saved
  }
  if (stage_.last) {
    o.lnf = take(Ns * C);        // (Ns, C)
    o.lnf_full = sp_ ? gathered : o.lnf;  // (B, T, C) gathered
    o.lnf_mean = take_stat(Ns);       // (Ns)
    o.lnf_rstd = take_stat(Ns);       // (Ns)
    o.logits = take(N * Vp / size_t(tp_size()));  // (B, T, Vp/tp), replaced by dlogits when training
    o.losses = take_stat(N);         // (B, T)
    o.row_lse = take_stat(N);        // (B, T) vocabulary-parallel log-sum-exp
  }
  // backward scratch
  o.dres = temp(Ns * C);      // (Ns, C) gradient of the residual stream
  o.dln = temp(Ns * C);       // (Ns, C)
  o.full = sp_ ? temp(N * C) : 0;   // (B, T, C) sequence parallel: partial sums, gathered grads
  o.full2 = sp_ ? temp(N * C) : 0;  // (B, T, C)
  o.dbig = temp(N * 4 * Cl);   // (B, T, 4C/tp)
  o.dbig2 = temp(N * 4 * Cl);  // (B, T, 4C/tp)
  o.dqkv = temp(N * 3 * Cl);   // (B, T, 3C/tp)
  o.datty = temp(N * Cl);      // (B, T, C/tp)
  off_ = std::move(o);
  saved_total_ = saved;
  saved_stats_total_ = saved_stats;
  acts_ = Tensor({int64_t(size_t(slots_) * saved + scratch)}, dtype_, be_);
  stats_ = Tensor({int64_t(size_t(slots_) * saved_stats + scratch_stats)}, params_.dtype(), be_);
  tokens_.clear();
  for (int k = 0; k < slots_; k++) tokens_.emplace_back(N * sizeof(int32_t), be_);  // (B, T) per slot
  targets_ = Buffer(N * sizeof(int32_t), be_);
  // The vocabulary-parallel cross-entropy's row vectors: row max, sum of exps, target logit
  // (fp32, N each) and the targets local to this rank (int32, N).
  ce_rows_ = Tensor({int64_t(3 * N)}, DType::fp32, be_);
  ce_local_targets_ = Buffer(N * sizeof(int32_t), be_);
  has_grad_.assign(size_t(slots_), 0);
  if (!fp8_.empty()) {  // the largest operands: (N, 4C) and (4C, C) + (N, 4C)
    fp8_a_ = Tensor({int64_t(N * 4 * C)}, DType::bf16, be_);
    fp8_b_ = Tensor({int64_t(4 * C * C + N * 4 * C)}, DType::bf16, be_);
  }
}

int64_t Gpt::boundary_elems(int64_t B, int64_t T) const { return (sp_ ? B * T / tp_size() : B * T) * cfg_.n_embd; }

const void* Gpt::output(int slot) const {
  MESHLM_CHECK(slot >= 0 && slot < slots_ && B_ > 0, "output: no such slot");
  const size_t off = stage_.n_layers > 0 ? off_.res3.back() : off_.encoded;
  return static_cast<const char*>(acts_.data()) + (size_t(slot) * saved_total_ + off) * esz_;
}

const void* Gpt::input_grad() const { return act(off_.dres); }

void Gpt::block_forward(int64_t l, const void* residual, bool write_output) {
  const int64_t i = l - stage_.first_layer;  // local index of the per-layer offsets
  const int64_t B = B_, T = T_, N = B * T, C = cfg_.n_embd;
  const int64_t Cl = C / tp_size(), NHl = cfg_.n_head / tp_size();  // this tp rank's share
  const int64_t Ns = sp_ ? N / tp_size() : N;
  const DType dt = dtype_;
  const std::string p = "transformer.h." + std::to_string(l) + ".";
  auto P = [&](const std::string& n) { return weight(n); };
  be_.layernorm_forward(dt, act(off_.ln1[i]), stat(off_.ln1_mean[i]), stat(off_.ln1_rstd[i]),
                        residual, P(p + "ln_1.weight"), P(p + "ln_1.bias"), Ns, C);
  if (sp_) seq_gather(act(off_.ln1_full[i]), act(off_.ln1[i]), Ns * C);  // all N rows
  block_matmul_forward(l, 0, act(off_.qkv[i]), act(off_.ln1_full[i]), p + "attn.c_attn", N, C, 3 * Cl);
  be_.attention_forward(dt, act(off_.atty[i]), stat(off_.lse[i]), act(off_.qkv[i]), B, T, Cl, NHl);
  block_matmul_forward(l, 1, act(off_.attproj[i]), act(off_.atty[i]), p + "attn.c_proj", N, Cl, C);
  be_.residual_forward(dt, act(off_.res2[i]), residual, act(off_.attproj[i]), Ns * C);
  be_.layernorm_forward(dt, act(off_.ln2[i]), stat(off_.ln2_mean[i]), stat(off_.ln2_rstd[i]),
                        act(off_.res2[i]), P(p + "ln_2.weight"), P(p + "ln_2.bias"), Ns, C);
  if (sp_) seq_gather(act(off_.ln2_full[i]), act(off_.ln2[i]), Ns * C);
  block_matmul_forward(l, 2, act(off_.fch[i]), act(off_.ln2_full[i]), p + "mlp.c_fc", N, C, 4 * Cl);
  be_.gelu_forward(dt, act(off_.fch_gelu[i]), act(off_.fch[i]), N * 4 * Cl);
  block_matmul_forward(l, 3, act(off_.fcproj[i]), act(off_.fch_gelu[i]), p + "mlp.c_proj", N, 4 * Cl, C);
  if (write_output) be_.residual_forward(dt, act(off_.res3[i]), act(off_.res2[i]), act(off_.fcproj[i]), Ns * C);
}

double Gpt::forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, float dloss_scale) {
  MESHLM_CHECK(stage_.first && stage_.last, "forward: this model is one pipeline stage (use forward_micro)");
  return forward_micro(0, tokens, nullptr, targets, B, T, dloss_scale);
}

void Gpt::backward(const std::function<void(int64_t offset)>& on_ready) { backward_micro(0, nullptr, on_ready); }

double Gpt::forward_micro(int slot, const int32_t* tokens, const void* input, const int32_t* targets,
                          int64_t B, int64_t T, float dloss_scale) {
  MESHLM_CHECK(slot >= 0 && slot < slots_, "forward_micro: slot " + std::to_string(slot) + " of " +
                                               std::to_string(slots_));
  ensure_activations(B, T);
  slot_ = slot;
  training_forward_ = dloss_scale != 0.0f;  // only training steps feed the fp8 amax histories
  has_grad_[size_t(slot)] = 0;
  const int64_t N = B * T, C = cfg_.n_embd, V = cfg_.vocab_size;
  // The vocabulary: this tp rank's rows [v0, v0 + Vl) of the padded Vp; Vv of them are real.
  const int64_t Vl = cfg_.padded_vocab_size() / tp_size(), v0 = Vl * (tp_ ? tp_->rank() : 0);
  const int64_t Vv = std::clamp<int64_t>(V - v0, 0, Vl);
  const DType dt = dtype_;
  auto P = [&](const std::string& n) { return weight(n); };
  const int64_t Ns = sp_ ? N / tp_size() : N;  // rows of the sequence regions

  if (stage_.first) {
    MESHLM_CHECK(tokens, "forward: the first stage needs tokens");
    for (int64_t i = 0; i < N; i++)
      MESHLM_CHECK(tokens[i] >= 0 && tokens[i] < V,
                   "token id " + std::to_string(tokens[i]) + " is outside the vocabulary [0, " +
                       std::to_string(V) + ")");
    std::vector<int32_t> ids(static_cast<size_t>(N));  // this rank's rows, -1 for ids on another rank
    for (int64_t i = 0; i < N; i++) ids[size_t(i)] = tokens[i] >= v0 && tokens[i] < v0 + Vl ? tokens[i] - int32_t(v0) : -1;
    be_.upload(tokens_[size_t(slot)].data(), ids.data(), ids.size() * sizeof(int32_t));
    // Vocabulary-parallel embedding: each rank adds the rows it holds (and rank 0 the positions);
    // the sum over the tp group is the embedding.
    // Sequence parallel: the sum is reduce-scattered, each rank keeping its Ns rows.
    be_.embedding_forward(dt, act(sp_ ? off_.full : off_.encoded), tokens_[size_t(slot)].as<int32_t>(), P("transformer.wte.weight"),
                          !tp_ || tp_->rank() == 0 ? P("transformer.wpe.weight") : nullptr, B, T, C);
    if (sp_) seq_reduce_scatter(act(off_.encoded), act(off_.full), N * C);
    else if (tp_) tp_all_reduce(act(off_.encoded), N * C);
  } else {
    MESHLM_CHECK(input, "forward: a stage after the first needs the previous stage's output");
    be_.copy(act(off_.encoded), input, size_t(Ns * C) * esz_);
  }
  const void* residual = act(off_.encoded);  // (Ns, C)
  for (int64_t l = stage_.first_layer; l < stage_.first_layer + stage_.n_layers; l++) {
    block_forward(l, residual, true);
    residual = act(off_.res3[size_t(l - stage_.first_layer)]);
  }
  if (!stage_.last) {
    has_grad_[size_t(slot)] = dloss_scale != 0.0f;
    return 0.0;
  }
  be_.layernorm_forward(dt, act(off_.lnf), stat(off_.lnf_mean), stat(off_.lnf_rstd), residual,
                        P("transformer.ln_f.weight"), P("transformer.ln_f.bias"), Ns, C);
  if (sp_) seq_gather(act(off_.lnf_full), act(off_.lnf), Ns * C);
  // LM head tied to wte: logits (B, T, Vl) = lnf (B, T, C) @ wte (Vl, C)^T, this rank's columns
  be_.matmul_forward(dt, act(off_.logits), act(off_.lnf_full), P("transformer.wte.weight"), nullptr, N,
                     C, Vl, WeightLayout::out_in);
  if (!targets) return 0.0;
  for (int64_t i = 0; i < N; i++)
    MESHLM_CHECK(targets[i] >= 0 && targets[i] < V,
                 "target id " + std::to_string(targets[i]) + " is outside the vocabulary [0, " +
                     std::to_string(V) + ")");
  has_grad_[size_t(slot)] = dloss_scale != 0.0f;
  const float dloss = dloss_scale / float(N);  // d(scale * mean) / d(loss_i)
  be_.upload(targets_.data(), targets, size_t(N) * sizeof(int32_t));
  const int32_t* targets_dev = targets_.as<int32_t>();
  if (!tp_) {
    be_.crossentropy_forward_backward(dt, stat(off_.losses), act(off_.logits), targets_dev, dloss, N, V, Vl);
  } else {
    // Vocabulary-parallel cross-entropy, never gathering the logits: each rank's log-sum-exp of
    // its columns, combined over the group (max, then sum of exp), the target's logit from the
    // rank that holds it, then each rank's gradient columns given the whole row's lse.
    float* lse = static_cast<float*>(stat(off_.row_lse));
    float* losses = static_cast<float*>(stat(off_.losses));
    float* m = ce_rows_.as<float>();  // (N) row maxima, then sums of exps and target logits
    float *sumexp = m + N, *x_t = sumexp + N;
    int32_t* local_t = ce_local_targets_.as<int32_t>();
    be_.logsumexp_rows(dt, lse, act(off_.logits), N, Vv, Vl);
    be_.copy(m, lse, size_t(N) * 4);
    tp_->all_reduce(m, N, DType::fp32, ReduceOp::max);
    tp_bytes_ += 3 * N * 4;  // this and the two sums below
    be_.crossentropy_partials(dt, sumexp, x_t, local_t, lse, m, act(off_.logits), targets_dev, N, v0, Vl);
    tp_->all_reduce(sumexp, N, DType::fp32);
    tp_->all_reduce(x_t, N, DType::fp32);
    be_.crossentropy_combine(DType::fp32, lse, losses, m, sumexp, x_t, N);
    if (dloss != 0.0f) be_.crossentropy_backward_given_lse(dt, act(off_.logits), lse, local_t, dloss, N, Vv, Vl);
  }
  return be_.sum(params_.dtype(), stat(off_.losses), N) / double(N);
}

void Gpt::backward_micro(int slot, const void* doutput, const std::function<void(int64_t offset)>& on_ready) {
  auto ready = [&](int64_t offset) {
    if (on_ready) on_ready(offset);
  };
  MESHLM_CHECK(slot >= 0 && slot < slots_ && B_ > 0 && has_grad_[size_t(slot)],
               "backward() needs a forward() with targets and a dloss_scale");
  has_grad_[size_t(slot)] = 0;
  slot_ = slot;
  const int64_t B = B_, T = T_, N = B * T, C = cfg_.n_embd;
  const int64_t Cl = C / tp_size(), NHl = cfg_.n_head / tp_size();
  const int64_t Vl = cfg_.padded_vocab_size() / tp_size();  // this rank's vocabulary columns
  const DType dt = dtype_;
  auto P = [&](const std::string& n) { return weight(n); };
  auto G = [&](const std::string& n) { return grad(n); };
  auto zero = [&](size_t off, int64_t n) { be_.zero(act(off), size_t(n) * esz_); };

  const int64_t Ns = sp_ ? N / tp_size() : N;  // rows of the sequence regions
  const int64_t L0 = stage_.first_layer, nL = stage_.n_layers;
  if (stage_.last) {
    // LM head: logits now hold dlogits (B, T, Vl), this rank's columns; each rank's part of the
    // input gradient is summed over the tp group (the head is column-parallel over the vocabulary).
    zero(off_.dln, Ns * C);
    if (sp_) {  // the partial input gradient, reduce-scattered to this rank's rows
      seq_gather(act(off_.lnf_full), act(off_.lnf), Ns * C);  // the head's input, again
      zero(off_.full2, N * C);
      be_.matmul_backward(dt, act(off_.full2), G("transformer.wte.weight"), nullptr, act(off_.logits),
                          act(off_.lnf_full), P("transformer.wte.weight"), N, C, Vl, WeightLayout::out_in);
      seq_reduce_scatter(act(off_.dln), act(off_.full2), N * C);
    } else {
      be_.matmul_backward(dt, act(off_.dln), G("transformer.wte.weight"), nullptr, act(off_.logits),
                          act(off_.lnf), P("transformer.wte.weight"), N, C, Vl, WeightLayout::out_in);
      if (tp_) tp_all_reduce(act(off_.dln), N * C);
    }
    const void* last_residual = nL > 0 ? act(off_.res3[size_t(nL - 1)]) : act(off_.encoded);
    zero(off_.dres, Ns * C);
    layernorm_backward("transformer.ln_f.", act(off_.dres), act(off_.dln), last_residual, stat(off_.lnf_mean),
                       stat(off_.lnf_rstd), Ns);
    ready(table_.at("transformer.ln_f.weight").offset);
  } else {
    MESHLM_CHECK(doutput, "backward: a stage before the last needs the gradient of its output");
    be_.copy(act(off_.dres), doutput, size_t(Ns * C) * esz_);
  }
  for (int64_t i = nL - 1; i >= 0; i--) {
    const int64_t l = L0 + i;
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    const void* residual = i > 0 ? act(off_.res3[size_t(i - 1)]) : act(off_.encoded);
    // Recomputation: the block's activations that forward did not keep, rebuilt from what it did.
    if (recompute_ == Recompute::full) {
      block_forward(l, residual, false);
    } else if (recompute_ == Recompute::selective) {
      be_.attention_forward(dt, act(off_.atty[i]), stat(off_.lse[i]), act(off_.qkv[i]), B, T, Cl, NHl);
      be_.gelu_forward(dt, act(off_.fch_gelu[i]), act(off_.fch[i]), N * 4 * Cl);
    }
    // dres is d(res3[l]); MLP branch: fcproj = gelu(fch) @ W + b
    zero(off_.dbig, N * 4 * Cl);
    block_matmul_backward(l, 3, act(off_.dbig), p + "mlp.c_proj", act(off_.dres), act(off_.fch_gelu[i]),
                          N, 4 * Cl, C);
    zero(off_.dbig2, N * 4 * Cl);
    be_.gelu_backward(dt, act(off_.dbig2), act(off_.fch[i]), act(off_.dbig), N * 4 * Cl);
    zero(off_.dln, Ns * C);
    if (sp_) seq_gather(act(off_.ln2_full[i]), act(off_.ln2[i]), Ns * C);  // c_fc's input, again
    block_matmul_backward(l, 2, act(off_.dln), p + "mlp.c_fc", act(off_.dbig2), act(off_.ln2_full[i]), N, C,
                          4 * Cl);
    layernorm_backward(p + "ln_2.", act(off_.dres), act(off_.dln), act(off_.res2[i]), stat(off_.ln2_mean[i]),
                       stat(off_.ln2_rstd[i]), Ns);
    // dres is now d(res2[l]); attention branch
    zero(off_.datty, N * Cl);
    block_matmul_backward(l, 1, act(off_.datty), p + "attn.c_proj", act(off_.dres), act(off_.atty[i]), N,
                          Cl, C);
    zero(off_.dqkv, N * 3 * Cl);
    be_.attention_backward(dt, act(off_.dqkv), act(off_.datty), act(off_.qkv[i]), act(off_.atty[i]),
                           stat(off_.lse[i]), B, T, Cl, NHl);
    zero(off_.dln, Ns * C);
    if (sp_) seq_gather(act(off_.ln1_full[i]), act(off_.ln1[i]), Ns * C);  // c_attn's input, again
    block_matmul_backward(l, 0, act(off_.dln), p + "attn.c_attn", act(off_.dqkv), act(off_.ln1_full[i]), N, C,
                          3 * Cl);
    layernorm_backward(p + "ln_1.", act(off_.dres), act(off_.dln), residual, stat(off_.ln1_mean[i]),
                       stat(off_.ln1_rstd[i]), Ns);
    // dres is now d(residual input of layer l); layer l's parameters are final
    ready(table_.at(p + "ln_1.weight").offset);
  }
  if (stage_.first) {
    // Each rank's rows take their tokens' gradients; the positions' (replicated) on every rank,
    // from all N rows (gathered under sequence parallelism).
    if (sp_) seq_gather(act(off_.full), act(off_.dres), Ns * C);
    be_.embedding_backward(dt, G("transformer.wte.weight"), G("transformer.wpe.weight"),
                           act(sp_ ? off_.full : off_.dres), tokens_[size_t(slot)].as<int32_t>(), B, T, C);
  }
  ready(0);  // a later stage: dres holds the gradient of this stage's input (input_grad())
}

std::vector<Gpt::TensorSpan> Gpt::tensor_spans() const {
  std::vector<TensorSpan> spans;
  auto layer_of = [](const std::string& name) -> std::string {
    if (name.rfind("transformer.h.", 0) == 0) {
      const size_t end = name.find('.', 14);
      return "h." + name.substr(14, end - 14);
    }
    return name.rfind("transformer.ln_f", 0) == 0 ? "final" : "embedding";
  };
  for (const ParamEntry& e : table_.entries()) {
    const std::string layer = layer_of(e.name);
    spans.push_back({layer, "weights", params_.dtype(),
                     static_cast<const char*>(params_.data()) + e.offset * master_esz_, e.numel()});
    spans.push_back({layer, "grads", grads_.dtype(),
                     static_cast<const char*>(grads_.data()) + e.offset * master_esz_, e.numel()});
  }
  if (B_ == 0) return spans;  // no forward yet
  const int64_t N = B_ * T_, C = cfg_.n_embd, Cl = C / tp_size();
  const int64_t Ns = sp_ ? N / tp_size() : N;  // rows of the sequence regions
  auto act_span = [&](const std::string& layer, size_t off, int64_t n) {
    if (off & kScratch) return;  // recomputed in backward: not a saved activation
    spans.push_back({layer, "activations", dtype_, act(off), n});
  };
  if (stage_.first) act_span("embedding", off_.encoded, Ns * C);
  for (int64_t i = 0; i < stage_.n_layers; i++) {
    const std::string layer = "h." + std::to_string(stage_.first_layer + i);
    for (size_t off : {off_.ln1[i], off_.attproj[i], off_.res2[i], off_.ln2[i], off_.fcproj[i], off_.res3[i]})
      act_span(layer, off, Ns * C);
    act_span(layer, off_.atty[i], N * Cl);
    act_span(layer, off_.qkv[i], N * 3 * Cl);
    act_span(layer, off_.fch[i], N * 4 * Cl);
    act_span(layer, off_.fch_gelu[i], N * 4 * Cl);
  }
  if (stage_.last) act_span("final", off_.lnf, Ns * C);
  return spans;
}

std::vector<float> Gpt::logits_at(int64_t b, int64_t t) const {
  MESHLM_CHECK(stage_.last, "logits_at: this pipeline stage has no LM head");
  MESHLM_CHECK(!tp_, "logits_at: the logits are split across the tensor-parallel ranks (sample on one rank)");
  const int64_t Vp = cfg_.padded_vocab_size();
  MESHLM_CHECK(b < B_ && t < T_, "logits_at: position outside the last forward");
  std::vector<float> out(Vp);
  Tensor row({Vp}, DType::fp32, be_);
  be_.convert(DType::fp32, row.data(), dtype_, static_cast<const char*>(act(off_.logits)) + size_t((b * T_ + t) * Vp) * esz_, Vp);
  be_.download(out.data(), row.data(), size_t(Vp) * 4);
  return out;
}

}  // namespace meshlm
