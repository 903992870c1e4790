#include "model/attention.h"

#include "core/error.h"

namespace meshlm {

Attention::Attention(const std::string& prefix, int64_t C, int64_t NH, double proj_std)
    : c_attn_({prefix + ".c_attn", C, 3 * C, 0.02, true, WeightLayout::in_out, "", false, Keep::unless_full, "c_attn"}),
      c_proj_({prefix + ".c_proj", C, C, proj_std, true, WeightLayout::in_out, "", false, Keep::unless_full,
               "attn.c_proj"}),
      C_(C),
      NH_(NH) {}

void Attention::declare(std::vector<ParamDecl>& out, const std::string& group) const {
  c_attn_.declare(out, group);
  c_proj_.declare(out, group);
}

void Attention::bind(const ParamTable& table) {
  c_attn_.bind(table);
  c_proj_.bind(table);
  Cl_ = c_attn_.local_out() / 3;  // this rank's channels of each of q, k, v: its heads
  NHl_ = NH_ * Cl_ / C_;
}

void Attention::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  c_attn_.plan(p, d, sp);                                                   // qkv (N, 3Cl)
  saved_.atty = p.keep("attn.out", d.N * Cl_, Keep::unless_recompute);            // (N, Cl)
  saved_.lse = p.keep("attn.lse", d.N * NHl_, Keep::unless_recompute, true);      // (B, NHl, T)
  c_proj_.plan(p, d, sp);                                                   // (Ns, C)
  datty_ = p.scratch("grad.atty", d.N * Cl_);                               // (N, Cl)
  dqkv_ = p.scratch("grad.qkv", d.N * 3 * Cl_);                             // (N, 3Cl)
}

void Attention::forward(Ctx& c, const void* x) {
  c_attn_.forward(c, x);
  if (c.kv && c.d.T == 1 && c.d.pos0 > 0) {
    decode(c);
  } else {
    recompute_selective(c);
    if (c.kv) fill_cache(c);
  }
  c_proj_.forward(c, c.at(saved_.atty));
}

// A prefill: the rows' k and v (each a (T, Cl) column block of qkv) into the cache.
void Attention::fill_cache(Ctx& c) {
  const char* qkv = static_cast<const char*>(c.at(c_attn_.output()));
  const size_t part = size_t(Cl_) * c.esz();
  MESHLM_CHECK(c.kv->channels() == Cl_ && c.d.B == 1 && c.d.pos0 == 0, "prefill: one sequence into an empty cache");
  for (int64_t t = 0; t < c.d.T; t++) {
    c.be.copy(static_cast<char*>(c.kv->k(c.layer)) + size_t(t) * part, qkv + size_t(t) * 3 * part + part, part);
    c.be.copy(static_cast<char*>(c.kv->v(c.layer)) + size_t(t) * part, qkv + size_t(t) * 3 * part + 2 * part, part);
  }
}

// A decode step: the new row's k and v (1, Cl) each go into the cache at its position; its q
// attends to every cached position.
void Attention::decode(Ctx& c) {
  const char* qkv = static_cast<const char*>(c.at(c_attn_.output()));
  const size_t part = size_t(Cl_) * c.esz(), at = size_t(c.d.pos0) * part;
  MESHLM_CHECK(c.kv->channels() == Cl_ && c.d.N == 1, "decode: the cache is not this attention's");
  c.be.copy(static_cast<char*>(c.kv->k(c.layer)) + at, qkv + part, part);
  c.be.copy(static_cast<char*>(c.kv->v(c.layer)) + at, qkv + 2 * part, part);
  c.be.attention_decode(c.dt, c.at(saved_.atty), qkv, c.kv->k(c.layer), c.kv->v(c.layer),
                        {1, 1, NHl_, NHl_, C_ / NH_, 3 * Cl_, Cl_}, c.d.pos0 + 1);
}

AttentionShape Attention::shape(const Dims& d) const {
  return {d.B, d.T, NHl_, NHl_, C_ / NH_, 3 * Cl_, 3 * Cl_};  // q, k, v side by side in each row of qkv
}

void Attention::recompute_selective(Ctx& c) {
  const char* qkv = static_cast<const char*>(c.at(c_attn_.output()));
  const size_t part = size_t(Cl_) * c.esz();
  c.be.attention_forward(c.dt, c.at(saved_.atty), c.at(saved_.lse), qkv, qkv + part, qkv + 2 * part, shape(c.d));
}

void Attention::backward(Ctx& c, void* dx, const void* dout, const void* x) {
  c.zero(datty_, c.d.N * Cl_);
  c_proj_.backward(c, c.at(datty_), dout, c.at(saved_.atty));
  c.zero(dqkv_, c.d.N * 3 * Cl_);
  const char* qkv = static_cast<const char*>(c.at(c_attn_.output()));
  char* dqkv = static_cast<char*>(c.at(dqkv_));
  const size_t part = size_t(Cl_) * c.esz();
  c.be.attention_backward(c.dt, dqkv, dqkv + part, dqkv + 2 * part, c.at(datty_), qkv, qkv + part, qkv + 2 * part,
                          c.at(saved_.atty), c.at(saved_.lse), shape(c.d));
  c_attn_.backward(c, dx, c.at(dqkv_), x);
}

void Attention::cost(const CostContext& c, std::vector<Cost>& out) const {
  c_attn_.cost(c, out);
  c_proj_.cost(c, out);
  // The core: per (batch, head) S = q k^T (T x T x HS) and y = P v (T x HS x T) forward, four
  // such products backward; counted whole (the causal mask halves what runs).
  const int64_t HS = C_ / NH_, BH = c.d.B * NHl_, T = c.d.T, esz = int64_t(dtype_size(c.dt));
  for (const char* what : {"attention scores", "attention values"})
    out.push_back({Cost::Kind::gemm, std::string(what) + " forward", false, BH * T, T, HS, c.dt, 0, "", ""});
  for (int k = 0; k < 4; k++)
    out.push_back({Cost::Kind::gemm, "attention backward", true, BH * T, T, HS, c.dt, 0, "", ""});
  c.saved(out, "attention output", Keep::unless_recompute, c.d.N * Cl_ * esz);
  c.saved(out, "attention lse", Keep::unless_recompute, c.d.N * NHl_ * int64_t(dtype_size(c.stat_dt)));
}

void Attention::activations(std::vector<std::pair<std::string, Act>>& out) const {
  out.push_back({"attn.c_attn", c_attn_.output()});
  out.push_back({"attn.core", saved_.atty});
  out.push_back({"attn.c_proj", c_proj_.output()});
}

}  // namespace meshlm
