#include "precision/quant_recipe.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/rng.h"

namespace meshlm {

namespace {

// The (rows, cols) of W and the axis of its reduction over C (forward) or OC (backward).
struct WeightView {
  int64_t rows, cols;
  int axis_c, axis_oc;
};
WeightView weight_view(const GemmShape& s) {
  if (s.layout == WeightLayout::in_out) return {s.C, s.OC, 0, 1};
  return {s.OC, s.C, 1, 0};
}

std::string role_of(const std::string& name) { return name.find("attn") != std::string::npos ? "attn" : "mlp"; }

}  // namespace

class QuantRecipe::Quantizer final : public GemmQuantizer {
 public:
  Quantizer(QuantRecipe& r, int64_t site) : r_(r), site_(site) {}

  void forward(Backend& be, const GemmShape& s, const void*& x, const void*& w, bool training) override {
    const GemmFormat& f = r_.sites_[size_t(site_)].format;
    if (!f.quantized) return;
    const WeightView v = weight_view(s);
    uint16_t* xq = r_.scratch(0, s.N * s.C);   // (N, C)
    uint16_t* wq = r_.scratch(1, s.C * s.OC);  // W's shape
    const TensorStats a = be.quantize_blocks(f.spec(Operand::x, 1, false), xq, x, s.N, s.C);
    const TensorStats b = be.quantize_blocks(f.spec(Operand::w, v.axis_c, false), wq, w, v.rows, v.cols);
    if (training) count(0, a), count(1, b);
    x = xq;
    w = wq;
  }

  Backward backward(Backend& be, const GemmShape& s, const void* dout, const void* x, const void* w) override {
    const GemmFormat& f = r_.sites_[size_t(site_)].format;
    if (!f.quantized) return {dout, w, dout, x};
    const WeightView v = weight_view(s);
    uint16_t* gd = r_.scratch(0, s.N * s.OC);  // (N, OC), scaled along OC: the input gradient's
    uint16_t* wd = r_.scratch(1, s.C * s.OC);  // W, scaled along OC
    uint16_t* xw = r_.scratch(2, s.N * s.C);   // (N, C), scaled along N: the weight gradient's
    uint16_t* gw = r_.scratch(3, s.N * s.OC);  // (N, OC), scaled along N
    QuantSpec g1 = f.spec(Operand::g, 1, false), g0 = f.spec(Operand::g, 0, true), x0 = f.spec(Operand::x, 0, true);
    g1.seed = g0.seed = r_.seed_;
    g1.stream = mix64((uint64_t(site_) << 40) ^ (uint64_t(r_.step_) << 8) ^ uint64_t(2 * calls_));
    g0.stream = mix64((uint64_t(site_) << 40) ^ (uint64_t(r_.step_) << 8) ^ uint64_t(2 * calls_ + 1));
    g0.hadamard_seed = x0.hadamard_seed = mix64(r_.seed_ ^ uint64_t(site_));
    calls_++;
    count(2, be.quantize_blocks(g1, gd, dout, s.N, s.OC));
    be.quantize_blocks(f.spec(Operand::w, v.axis_oc, false), wd, w, v.rows, v.cols);
    be.quantize_blocks(x0, xw, x, s.N, s.C);
    be.quantize_blocks(g0, gw, dout, s.N, s.OC);
    return {gd, wd, gw, xw};
  }

  void begin_step() {
    calls_ = 0;
    std::fill(counts_, counts_ + kCounts, 0.0);
  }
  const double* counts() const { return counts_; }

 private:
  void count(int op, const TensorStats& t) {
    counts_[3 * op] += double(t.n);
    counts_[3 * op + 1] += double(t.overflow);
    counts_[3 * op + 2] += double(t.underflow);
  }
  QuantRecipe& r_;
  int64_t site_;
  int64_t calls_ = 0;
  double counts_[kCounts] = {};
};

QuantRecipe::QuantRecipe(Model& model, const PrecisionPlan& plan, const std::string& fallback, uint64_t seed)
    : model_(model), seed_(seed) {
  MESHLM_CHECK(model.dtype() == DType::bf16, "the block-scaled GEMM formats need the bf16 compute dtype");
  build_sites(model, plan, fallback);
  for (const PrecisionPromotion& p : plan.promotions) promote(p);
}

// The whole model's sites from this stage's blocks (every block has the same Linears: their
// names differ only in the layer number) and the model's config for the head.
void QuantRecipe::build_sites(Model& model, const PrecisionPlan& plan, const std::string& fallback) {
  const int64_t n_layer = model.config().n_layer;
  const std::vector<Linear*> mine = model.block_linears();
  const std::vector<int64_t> layers = model.stage().layers(n_layer);
  MESHLM_CHECK(!layers.empty() && mine.size() % layers.size() == 0, "precision plan: a stage without blocks");
  const size_t per_block = mine.size() / layers.size();
  const std::string token = "." + std::to_string(layers.front()) + ".";
  for (int64_t l = 0; l < n_layer; l++)
    for (size_t j = 0; j < per_block; j++) {
      const LinearSpec& t = mine[j]->spec();
      Site s;
      s.name = t.name;
      s.name.replace(s.name.find(token), token.size(), "." + std::to_string(l) + ".");
      s.layer = l, s.role = role_of(t.name), s.in = t.in, s.out = t.out;
      const std::string f = plan.format_of(l, s.role, n_layer);
      s.format = gemm_format(!f.empty() ? f : !fallback.empty() ? fallback : "bf16");
      sites_.push_back(s);
    }
  Site head;
  head.name = "lm_head", head.layer = -1, head.role = "head";
  head.in = model.config().n_embd, head.out = model.config().vocab_size;
  const std::string hf = plan.format_of(-1, "head", n_layer);
  head.format = gemm_format(hf.empty() ? "bf16" : hf);
  sites_.push_back(head);
  for (size_t i = 0; i < mine.size(); i++) attached_.push_back(mine[i]);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < mine.size(); i++) ids.push_back(layers[i / per_block] * int64_t(per_block) + int64_t(i % per_block));
  if (Linear* h = model.head_linear()) {
    attached_.push_back(h);
    ids.push_back(int64_t(sites_.size()) - 1);
  }
  for (size_t i = 0; i < attached_.size(); i++) {
    quantizers_.push_back(std::make_unique<Quantizer>(*this, ids[i]));
    attached_[i]->set_quantizer(quantizers_.back().get());
  }
  site_ids_ = ids;
}

QuantRecipe::~QuantRecipe() {
  for (Linear* l : attached_) l->set_quantizer(nullptr);
}

void QuantRecipe::promote(const PrecisionPromotion& p) {
  MESHLM_CHECK(p.site >= 0 && p.site < int64_t(sites_.size()), "precision: no site " + std::to_string(p.site));
  sites_[size_t(p.site)].format = gemm_format(p.format);
  promotions_.push_back(p);
}

nlohmann::json promotions_to_json(const std::vector<PrecisionPromotion>& p) {
  nlohmann::json j = nlohmann::json::array();
  for (const PrecisionPromotion& x : p)
    j.push_back({{"step", x.step}, {"site", x.site}, {"format", x.format}, {"reason", x.reason}});
  return j;
}

std::vector<PrecisionPromotion> promotions_from_json(const nlohmann::json& j) {
  std::vector<PrecisionPromotion> out;
  try {
    for (const auto& x : j)
      out.push_back({x.at("step").get<int64_t>(), x.at("site").get<int64_t>(), x.at("format").get<std::string>(),
                     x.value("reason", std::string())});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("checkpoint: bad precision promotions: ") + e.what());
  }
  return out;
}

void QuantRecipe::begin_step(int64_t step) {
  step_ = step;
  for (auto& q : quantizers_) q->begin_step();
}

std::vector<double> QuantRecipe::step_counts() const {
  std::vector<double> c(sites_.size() * kCounts, 0.0);
  for (size_t i = 0; i < quantizers_.size(); i++)
    std::copy(quantizers_[i]->counts(), quantizers_[i]->counts() + kCounts, c.begin() + site_ids_[i] * kCounts);
  return c;
}

void QuantRecipe::set_step_counts(const std::vector<double>& c) {
  MESHLM_CHECK(c.size() == sites_.size() * kCounts, "precision: wrong number of counts");
  summed_ = c;
}

double QuantRecipe::flops_share_at_most(double bits) const {
  double all = 0, low = 0;
  for (const Site& s : sites_) {
    const double f = double(s.in) * double(s.out);
    all += f;
    if (s.format.bits() <= bits) low += f;
  }
  return all > 0 ? low / all : 0;
}

double QuantRecipe::mean_bits() const {
  double all = 0, bits = 0;
  for (const Site& s : sites_) {
    const double f = double(s.in) * double(s.out);
    all += f;
    bits += f * s.format.bits();
  }
  return all > 0 ? bits / all : 16;
}

std::string QuantRecipe::describe() const {
  std::map<std::string, int> n;
  for (const Site& s : sites_) n[s.format.name]++;
  std::string out;
  for (const auto& [name, k] : n) out += (out.empty() ? "" : ", ") + name + " on " + std::to_string(k);
  return out + " of " + std::to_string(sites_.size()) + " GEMM sites (mean " + std::to_string(mean_bits()).substr(0, 4) +
         " bits per forward operand, by FLOPs)";
}

uint16_t* QuantRecipe::scratch(int which, int64_t n) {
  Tensor& t = scratch_[which];
  if (t.numel() < n) t = Tensor({n}, DType::bf16, model_.backend());
  return t.as<uint16_t>();
}

}  // namespace meshlm
