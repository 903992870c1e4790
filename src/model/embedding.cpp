#include "model/embedding.h"

#include "core/error.h"

namespace meshlm {

Embedding::Embedding(std::string wte_name, int64_t V, int64_t Vp, int64_t C, int64_t positions)
    : EmbeddingUnit("embedding"), wte_name_(std::move(wte_name)), V_(V), Vp_(Vp), C_(C), positions_(positions) {}

ParamDecl Embedding::wte_decl(const std::string& name, int64_t V, int64_t Vp, int64_t C, bool tied,
                              const std::string& group) {
  // (Vp, C) stored, (V, C) in Hugging Face's files; the padding rows stay zero.
  return {name, {Vp, C}, 0.02, 0, true, {V, C}, V * C, group, tied};
}

void Embedding::declare(std::vector<ParamDecl>& out) const {
  out.push_back(wte_decl(wte_name_, V_, Vp_, C_, false, "embedding"));
  if (positions_ > 0) out.push_back({"transformer.wpe.weight", {positions_, C_}, 0.02, 0, true, {}, -1, "embedding", false});
}

void Embedding::bind(const ParamTable& table) {
  wte_ = &table.at(wte_name_);
  wpe_ = positions_ > 0 ? &table.at("transformer.wpe.weight") : nullptr;
  Vl_ = wte_->shape[0];
  v0_ = Vl_ * wte_->tp_rank;
}

void Embedding::plan(ActivationPlanner& p, const Dims& d, bool sp) {
  if (sp) full_ = p.scratch("tp.full", d.N * C_);
}

void Embedding::set_token_slots(Backend& be, int slots, int64_t N) {
  saved_.ids.clear();
  for (int k = 0; k < slots; k++) saved_.ids.emplace_back(size_t(N) * sizeof(int32_t), be);
}

void Embedding::forward(Ctx& c, const int32_t* tokens, void* out) {
  const int64_t N = c.d.N;
  std::vector<int32_t> ids(static_cast<size_t>(N));  // on the host: this rank's rows, -1 elsewhere
  for (int64_t i = 0; i < N; i++) {
    MESHLM_CHECK(tokens[i] >= 0 && tokens[i] < V_, "token id " + std::to_string(tokens[i]) +
                                                       " is outside the vocabulary [0, " + std::to_string(V_) + ")");
    ids[size_t(i)] = tokens[i] >= v0_ && tokens[i] < v0_ + Vl_ ? tokens[i] - int32_t(v0_) : -1;
  }
  Buffer& mine = saved_.ids[size_t(c.acts.slot())];
  c.be.upload(mine.data(), ids.data(), ids.size() * sizeof(int32_t));
  void* sum = c.sequence_parallel ? c.at(full_) : out;
  // Positions pos0 .. pos0 + T - 1: the rows of wpe from pos0 (a decode step's position).
  const void* wpe = wpe_ && c.tp.rank() == 0
                        ? static_cast<const char*>(c.w.weight(*wpe_)) + size_t(c.d.pos0 * C_) * c.esz()
                        : nullptr;
  MESHLM_CHECK(!wpe_ || c.d.pos0 + c.d.T <= positions_, "position " + std::to_string(c.d.pos0 + c.d.T - 1) +
                                                          " is past the position embedding's " +
                                                          std::to_string(positions_) + " rows");
  c.be.embedding_forward(c.dt, sum, mine.as<int32_t>(), c.w.weight(*wte_), wpe, c.d.B, c.d.T, C_);
  if (c.sequence_parallel) c.tp.scatter_forward(out, sum, N * C_);
  else c.tp.reduce_forward(out, N * C_);
}

void Embedding::backward(Ctx& c, const void* dout) {
  // Every rank's rows take their tokens' gradients; the positions' (replicated) on every rank,
  // from all N rows (gathered under sequence parallelism).
  if (c.sequence_parallel) {
    c.tp.scatter_backward(c.at(full_), dout, c.d.Ns * C_);
    dout = c.at(full_);
  }
  c.be.embedding_backward(c.dt, c.w.grad(*wte_), wpe_ ? c.w.grad(*wpe_) : nullptr, dout,
                          saved_.ids[size_t(c.acts.slot())].as<int32_t>(), c.d.B, c.d.T, C_);
}

void Embedding::cost(const CostContext& c, std::vector<Cost>& out) const {
  const int64_t N = c.d.N, esz = int64_t(dtype_size(c.dt));
  c.memory(out, "embedding forward", false, 3 * N * C_ * esz);  // a wte row, a wpe row, the output
  c.memory(out, "embedding backward", true, N * C_ * (esz + 8));  // the gradient, two fp32 rows
  if (c.tp > 1) {
    Cost r{Cost::Kind::collective, "embedding forward", false, 0, 0, 0, c.dt, N * C_ * 4, "all_reduce", "tp"};
    if (c.sequence_parallel) r.collective = "reduce_scatter";
    out.push_back(r);
    if (c.sequence_parallel)
      out.push_back({Cost::Kind::collective, "embedding backward", true, 0, 0, 0, c.dt, N * C_ * esz, "all_gather", "tp"});
  }
}

}  // namespace meshlm
