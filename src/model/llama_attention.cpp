#include "model/llama_attention.h"

#include "core/error.h"
#include "model/rope.h"

namespace meshlm {

namespace {
LinearSpec projection(const std::string& name, int64_t in, int64_t out, bool entry_shared) {
  LinearSpec s{name, in, out, 0.02, false, WeightLayout::out_in, "", false, Keep::unless_full, ""};
  s.key = name.substr(name.rfind('.') + 1);  // "q_proj": the blocks share its recomputed buffer
  s.entry_shared = entry_shared;
  return s;
}
}  // namespace

LlamaAttention::LlamaAttention(const std::string& prefix, const ModelConfig& cfg)
    : q_(projection(prefix + ".q_proj", cfg.n_embd, cfg.n_embd, false)),
      k_(projection(prefix + ".k_proj", cfg.n_embd, cfg.kv_heads() * cfg.head_size(), true)),
      v_(projection(prefix + ".v_proj", cfg.n_embd, cfg.kv_heads() * cfg.head_size(), true)),
      o_(projection(prefix + ".o_proj", cfg.n_embd, cfg.n_embd, false)),
      cfg_(cfg),
      HS_(cfg.head_size()) {}

void LlamaAttention::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  for (const Linear* l : {&q_, &k_, &v_, &o_}) l->declare(out, group);
}

void LlamaAttention::bind(const ParamTable& table) {
  for (Linear* l : {&q_, &k_, &v_, &o_}) l->bind(table);
  NHl_ = q_.local_out() / HS_;
  NKVl_ = k_.local_out() / HS_;
}

void LlamaAttention::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  q_.plan(p, d, sp);                                                        // (N, NHl HS), rotated
  k_.plan(p, d, sp);                                                        // (N, NKVl HS), rotated
  v_.plan(p, d, sp);                                                        // (N, NKVl HS)
  saved_.atty = p.keep("attn.out", d.N * NHl_ * HS_, Keep::unless_recompute);     // (N, NHl HS)
  saved_.lse = p.keep("attn.lse", d.N * NHl_, Keep::unless_recompute, true);      // (B, NHl, T)
  o_.plan(p, d, sp);                                                        // (Ns, C)
  datty_ = p.scratch("grad.atty", d.N * NHl_ * HS_);                        // (N, NHl HS)
  dq_ = p.scratch("grad.q", d.N * NHl_ * HS_);                              // (N, NHl HS)
  dk_ = p.scratch("grad.k", d.N * NKVl_ * HS_);                             // (N, NKVl HS)
  dv_ = p.scratch("grad.v", d.N * NKVl_ * HS_);                             // (N, NKVl HS)
}

AttentionShape LlamaAttention::shape(const Dims& d) const {
  return {d.B, d.T, NHl_, NKVl_, HS_, NHl_ * HS_, NKVl_ * HS_};
}

const void* LlamaAttention::table(Ctx& c) {
  const DType st = c.w.master_dtype();
  if (!cos_sin_.data() || cos_sin_.dtype() != st) {
    const std::vector<double> t = rope_table(cfg_, cfg_.max_seq_len);
    cos_sin_ = Tensor({int64_t(t.size())}, st, c.be);
    if (st == DType::fp64) {
      c.be.upload(cos_sin_.data(), t.data(), t.size() * 8);
    } else {
      const std::vector<float> f(t.begin(), t.end());
      c.be.upload(cos_sin_.data(), f.data(), f.size() * 4);
    }
  }
  return cos_sin_.data();
}

void LlamaAttention::forward(Ctx& c, const void* x) {
  Linear::forward_group(c, {&q_, &k_, &v_}, x);
  // Rotated by positions pos0 .. pos0 + T - 1: the table's rows (HS / 2 cos-sin pairs each) from pos0.
  const void* rot = static_cast<const char*>(table(c)) + size_t(c.d.pos0 * HS_) * dtype_size(c.w.master_dtype());
  MESHLM_CHECK(c.d.pos0 + c.d.T <= cfg_.max_seq_len, "position " + std::to_string(c.d.pos0 + c.d.T - 1) +
                                                       " is past max_seq_len " + std::to_string(cfg_.max_seq_len));
  c.be.rope_forward(c.dt, c.at(q_.output()), rot, c.d.B, c.d.T, NHl_, HS_);
  c.be.rope_forward(c.dt, c.at(k_.output()), rot, c.d.B, c.d.T, NKVl_, HS_);
  if (c.kv && c.d.T == 1 && c.d.pos0 > 0) {
    decode(c);
  } else {  // training, evaluation, or a prefill, which also fills the cache
    recompute_selective(c);
    if (c.kv) {
      MESHLM_CHECK(c.d.B == 1 && c.d.pos0 == 0, "prefill: one sequence into an empty cache");
      const size_t rows = size_t(c.d.T * NKVl_ * HS_) * c.esz();
      c.be.copy(c.kv->k(c.layer), c.at(k_.output()), rows);
      c.be.copy(c.kv->v(c.layer), c.at(v_.output()), rows);
    }
  }
  o_.forward(c, c.at(saved_.atty));
}

// A decode step: the new row's rotated k and its v (1, NKVl HS) go into the cache at its
// position; its q attends to every cached position.
void LlamaAttention::decode(Ctx& c) {
  const size_t row = size_t(NKVl_ * HS_) * c.esz(), at = size_t(c.d.pos0) * row;
  MESHLM_CHECK(c.kv->channels() == NKVl_ * HS_ && c.d.N == 1, "decode: the cache is not this attention's");
  c.be.copy(static_cast<char*>(c.kv->k(c.layer)) + at, c.at(k_.output()), row);
  c.be.copy(static_cast<char*>(c.kv->v(c.layer)) + at, c.at(v_.output()), row);
  c.be.attention_decode(c.dt, c.at(saved_.atty), c.at(q_.output()), c.kv->k(c.layer), c.kv->v(c.layer),
                        {1, 1, NHl_, NKVl_, HS_, NHl_ * HS_, NKVl_ * HS_}, c.d.pos0 + 1);
}

void LlamaAttention::recompute_selective(Ctx& c) {
  c.be.attention_forward(c.dt, c.at(saved_.atty), c.at(saved_.lse), c.at(q_.output()), c.at(k_.output()),
                         c.at(v_.output()), shape(c.d));
}

void LlamaAttention::backward(Ctx& c, void* dx, const void* dout, const void* x) {
  const int64_t nq = c.d.N * NHl_ * HS_, nkv = c.d.N * NKVl_ * HS_;
  c.zero(datty_, nq);
  o_.backward(c, c.at(datty_), dout, c.at(saved_.atty));
  c.zero(dq_, nq);
  c.zero(dk_, nkv);
  c.zero(dv_, nkv);
  c.be.attention_backward(c.dt, c.at(dq_), c.at(dk_), c.at(dv_), c.at(datty_), c.at(q_.output()), c.at(k_.output()),
                          c.at(v_.output()), c.at(saved_.atty), c.at(saved_.lse), shape(c.d));
  c.be.rope_backward(c.dt, c.at(dq_), table(c), c.d.B, c.d.T, NHl_, HS_);  // back to the projections' outputs
  c.be.rope_backward(c.dt, c.at(dk_), table(c), c.d.B, c.d.T, NKVl_, HS_);
  Linear::backward_group(c, {{&q_, c.at(dq_)}, {&k_, c.at(dk_)}, {&v_, c.at(dv_)}}, dx, x);
}

void LlamaAttention::cost(const CostContext& c, std::vector<Cost>& out) const {
  for (const Linear* l : {&q_, &k_, &v_, &o_}) l->cost(c, out);
  // The core per (batch, query head): scores and values forward, four products backward
  // (counted whole; the causal mask halves what runs), as GPT-2's.
  const int64_t BH = c.d.B * NHl_, T = c.d.T, esz = int64_t(dtype_size(c.dt));
  for (const char* what : {"attention scores", "attention values"})
    out.push_back({Cost::Kind::gemm, std::string(what) + " forward", false, BH * T, T, HS_, c.dt, 0, "", ""});
  for (int k = 0; k < 4; k++)
    out.push_back({Cost::Kind::gemm, "attention backward", true, BH * T, T, HS_, c.dt, 0, "", ""});
  const int64_t rot = c.d.N * (NHl_ + NKVl_) * HS_ * esz;
  c.memory(out, "rotary forward", false, 2 * rot);
  c.memory(out, "rotary backward", true, 2 * rot);
  c.saved(out, "attention output", Keep::unless_recompute, c.d.N * NHl_ * HS_ * esz);
  c.saved(out, "attention lse", Keep::unless_recompute, c.d.N * NHl_ * int64_t(dtype_size(c.stat_dt)));
}

void LlamaAttention::activations(std::vector<std::pair<std::string, Act>>& out) const {
  out.push_back({"attn.q_proj", q_.output()});
  out.push_back({"attn.k_proj", k_.output()});
  out.push_back({"attn.v_proj", v_.output()});
  out.push_back({"attn.core", saved_.atty});
  out.push_back({"attn.o_proj", o_.output()});
}

}  // namespace meshlm
