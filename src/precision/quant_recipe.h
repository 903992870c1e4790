// The precision ladder as a transform of the model's GEMMs: each Linear of the blocks, and the
// LM head where the plan names it, is a site whose format (precision/gemm_formats.h) comes
// from the run's PrecisionPlan, with its promotions applied. A site quantizes its operands
// through the backend's quantize_blocks, each along its product's reduction axis (forward: x
// and W along C; backward: the output gradient and W along OC for the input gradient, x and the
// output gradient along the tokens for the weight gradient), into scratch shared by the sites
// and grown to the largest operands. The model is unchanged (compute dtype bf16).
//
// Sites are numbered in model order over the whole model (block l's Linears, l = 0..n_layer-1,
// then the head), so every pipeline stage holds the same table and attaches its own. Each step
// a site counts, per operand, what quantizing did (values, saturated or non-finite, non-zero
// flushed to zero): step_counts() for the trainer to sum over ranks, read by the stability
// rules (train/stability.h). Stochastic rounding draws its bits from (seed, site, step, call),
// so a resumed run rounds as the uninterrupted one.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "precision/gemm_formats.h"

namespace meshlm {

class QuantRecipe {
 public:
  struct Site {
    std::string name;  // "transformer.h.3.mlp.c_fc", "lm_head"
    int64_t layer = 0;  // -1: the LM head
    std::string role;   // "attn", "mlp", "head"
    int64_t in = 0, out = 0;  // unsharded C, OC: the GEMM FLOPs per token are 6 in out
    GemmFormat format;
  };
  // Operand counts of one site and step: n, overflow, underflow for x, w and g.
  static constexpr int kCounts = 9;

  // `fallback`: the format of Linears no rule matches ("" or "bf16": the compute dtype).
  QuantRecipe(Model& model, const PrecisionPlan& plan, const std::string& fallback, uint64_t seed);
  ~QuantRecipe();
  QuantRecipe(const QuantRecipe&) = delete;
  QuantRecipe& operator=(const QuantRecipe&) = delete;

  const std::vector<Site>& sites() const { return sites_; }
  // A promotion: the site's format from now on, recorded (the plan's version is their count).
  void promote(const PrecisionPromotion& p);
  const std::vector<PrecisionPromotion>& promotions() const { return promotions_; }
  void begin_step(int64_t step);
  // This step's counts so far, kCounts per site (zeros for sites of other stages), and the
  // same after the trainer summed them over the ranks.
  std::vector<double> step_counts() const;
  void set_step_counts(const std::vector<double>& c);
  const std::vector<double>& summed_counts() const { return summed_; }
  // The share of the model's GEMM FLOPs per token whose format quantizes the forward operands
  // to at most `bits` bits per value (4.5: the 4-bit formats).
  double flops_share_at_most(double bits) const;
  // Bits per value of the forward operands averaged over the GEMM FLOPs (16 for bf16 GEMMs).
  double mean_bits() const;
  std::string describe() const;  // "mxfp4 on 22 of 24 Linears (91% of GEMM FLOPs), bf16 on 2"

 private:
  class Quantizer;
  void build_sites(Model& model, const PrecisionPlan& plan, const std::string& fallback);
  uint16_t* scratch(int which, int64_t n);  // buffer `which` (0-3) grown to n bf16 elements
  Model& model_;
  uint64_t seed_;
  int64_t step_ = 0;
  std::vector<Site> sites_;
  std::vector<PrecisionPromotion> promotions_;
  std::vector<std::unique_ptr<Quantizer>> quantizers_;  // this stage's, one per attached Linear
  std::vector<Linear*> attached_;
  std::vector<int64_t> site_ids_;  // of each attached Linear
  std::vector<double> summed_;     // the step's counts over every rank (set_step_counts)
  Tensor scratch_[4];
};

nlohmann::json promotions_to_json(const std::vector<PrecisionPromotion>& p);
std::vector<PrecisionPromotion> promotions_from_json(const nlohmann::json& j);

}  // namespace meshlm
