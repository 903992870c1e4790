// The token embedding (wte, vocabulary-parallel: rank r holds rows [r Vl, (r+1) Vl) of the
// padded vocabulary) plus, optionally, learned positions (wpe, replicated). Each rank adds the
// rows it holds (a token elsewhere contributes nothing) and rank 0 the positions; the exit
// collective sums the parts: `reduce` (all-reduce), or `scatter` (reduce-scatter to this rank's
// rows) under sequence parallelism. The token ids of each micro-batch in flight are kept for
// backward, which scatter-adds the (gathered) residual gradient into the rows.
#pragma once
#include <string>
#include <vector>

#include "model/unit.h"

namespace meshlm {

class Embedding final : public EmbeddingUnit {
 public:
  // wte_name: the token embedding's parameter ("transformer.wte.weight", Llama's
  // "model.embed_tokens.weight"); V real tokens of Vp; positions: rows of GPT-2's wpe (0: none).
  Embedding(std::string wte_name, int64_t V, int64_t Vp, int64_t C, int64_t positions);
  void declare(std::vector<ParamDecl>& out) const override;
  void bind(const ParamTable& table) override;
  void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel) override;
  void cost(const CostContext& c, std::vector<Cost>& out) const override;
  void set_token_slots(Backend& be, int slots, int64_t N) override;
  void forward(Ctx& c, const int32_t* tokens, void* out) override;
  void backward(Ctx& c, const void* dout) override;
  // A (Vp, C) vocabulary matrix's declaration (the HF tensor its first V rows): the token
  // embedding's, and an LM head's (tied: shared with the embedding; or its own).
  static ParamDecl wte_decl(const std::string& name, int64_t V, int64_t Vp, int64_t C, bool tied,
                            const std::string& group);

 private:
  std::string wte_name_;
  int64_t V_, Vp_, C_, positions_;
  const ParamEntry *wte_ = nullptr, *wpe_ = nullptr;
  int64_t v0_ = 0, Vl_ = 0;  // this rank's rows of the vocabulary
  Act full_;                 // (N, C) sequence parallel: the partial sum, the gathered gradient
  struct Saved {
    std::vector<Buffer> ids;  // (B, T) int32 per slot: this rank's rows, -1 for ids elsewhere
  } saved_;
};

}  // namespace meshlm
