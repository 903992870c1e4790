#include "precision/fp8_recipe.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace meshlm {

class Fp8Recipe::Site final : public GemmQuantizer {
 public:
  Site(Fp8Recipe& r, const Fp8ScalingConfig& cfg, int64_t index)
      : r_(r), x(DType::fp8_e4m3, cfg), w(DType::fp8_e4m3, cfg), g(DType::fp8_e5m2, cfg), index_(index) {}

  void forward(Backend& be, const GemmShape& s, const void*& xp, const void*& wp, bool training) override {
    const int64_t nx = s.N * s.C, nw = s.C * s.OC;
    uint16_t* xq = r_.scratch(r_.a_, nx, be);  // (N, C)
    uint16_t* wq = r_.scratch(r_.b_, nw, be);  // (C, OC)
    const float ax = be.fake_quantize(DType::fp8_e4m3, xq, xp, nx, scale(be, x, xp, nx));
    const float aw = be.fake_quantize(DType::fp8_e4m3, wq, wp, nw, scale(be, w, wp, nw));
    if (training) {
      x_amax = std::max(x_amax, ax);
      w_amax = std::max(w_amax, aw);
    }
    xp = xq;
    wp = wq;
  }
  // The operands as forward saw them (the same scales until end_step), dout in e5m2.
  Backward backward(Backend& be, const GemmShape& s, const void* gp, const void* xp, const void* wp) override {
    const int64_t nx = s.N * s.C, nw = s.C * s.OC, ng = s.N * s.OC;
    uint16_t* wq = r_.scratch(r_.b_, nw + nx, be);  // (C, OC), then x (N, C)
    uint16_t* gq = r_.scratch(r_.a_, ng, be);       // (N, OC)
    be.fake_quantize(DType::fp8_e4m3, wq, wp, nw, scale(be, w, wp, nw));
    g_amax = std::max(g_amax, be.fake_quantize(DType::fp8_e5m2, gq, gp, ng, scale(be, g, gp, ng)));
    be.fake_quantize(DType::fp8_e4m3, wq + nw, xp, nx, scale(be, x, xp, nx));
    return {gq, wq, gq, wq + nw};
  }
  // Real fp8 products (fp8_gemm = real): the operands as one-byte codes, each laid out with its
  // product's reduction axis contiguous (ops.inc gemm_fp8), the scales undone by alpha. The
  // amaxes collect in the backend's memory (amax_slot) and are read once a step.
  bool runs_products() const override { return r_.real_; }
  void forward_product(Backend& be, const GemmShape& s, void* out, const void* xp, const void* wp, const void* bias,
                       bool training) override {
    const float sx = scale(be, x, xp, s.N * s.C), sw = scale(be, w, wp, s.C * s.OC);
    uint8_t* xq = r_.codes(r_.a8_, s.N * s.C, be);   // (N, C)
    uint8_t* wq = r_.codes(r_.b8_, s.C * s.OC, be);  // (OC, C)
    be.quantize_fp8(DType::fp8_e4m3, xq, xp, s.N, s.C, sx, false, training ? amax_slot(0) : nullptr);
    quantize_weight(be, s, wq, wp, sw, false, training ? amax_slot(1) : nullptr);
    be.gemm_fp8(DType::fp8_e4m3, DType::fp8_e4m3, s.N, s.OC, s.C, unscale(sx, sw), xq, s.C, wq, s.C, 0.0f,
                DType::bf16, out, s.OC, bias);
  }
  void backward_products(Backend& be, const GemmShape& s, void* dinp, void* dweight, const void* gp, const void* xp,
                         const void* wp) override {
    const float sg = scale(be, g, gp, s.N * s.OC);
    float* g_slot = amax_slot(2);  // the output gradient's amax, from its first quantization
    if (dinp) {  // dinp (N, C) += dout (N, OC) @ W^T: the reduction over OC
      const float sw = scale(be, w, wp, s.C * s.OC);
      uint8_t* gq = r_.codes(r_.a8_, s.N * s.OC, be);  // (N, OC)
      uint8_t* wq = r_.codes(r_.b8_, s.C * s.OC, be);  // (C, OC)
      be.quantize_fp8(DType::fp8_e5m2, gq, gp, s.N, s.OC, sg, false, std::exchange(g_slot, nullptr));
      quantize_weight(be, s, wq, wp, sw, true, nullptr);
      be.gemm_fp8(DType::fp8_e5m2, DType::fp8_e4m3, s.N, s.C, s.OC, unscale(sg, sw), gq, s.OC, wq, s.OC, 1.0f,
                  DType::bf16, dinp, s.C, nullptr);
    }
    if (dweight) {  // dW += x^T @ dout in W's layout: the reduction over the N rows
      const float sx = scale(be, x, xp, s.N * s.C);
      uint8_t* gt = r_.codes(r_.a8_, s.N * s.OC, be);  // (OC, N)
      uint8_t* xt = r_.codes(r_.b8_, s.N * s.C, be);   // (C, N)
      be.quantize_fp8(DType::fp8_e5m2, gt, gp, s.N, s.OC, sg, true, g_slot);
      be.quantize_fp8(DType::fp8_e4m3, xt, xp, s.N, s.C, sx, true, nullptr);
      if (s.layout == WeightLayout::out_in)  // dW (OC, C)
        be.gemm_fp8(DType::fp8_e5m2, DType::fp8_e4m3, s.OC, s.C, s.N, unscale(sg, sx), gt, s.N, xt, s.N, 1.0f,
                    DType::fp32, dweight, s.C, nullptr);
      else  // dW (C, OC)
        be.gemm_fp8(DType::fp8_e4m3, DType::fp8_e5m2, s.C, s.OC, s.N, unscale(sx, sg), xt, s.N, gt, s.N, 1.0f,
                    DType::fp32, dweight, s.OC, nullptr);
    }
  }

  void end_step() {
    auto record = [](Fp8Scale& s, float& amax) {
      if (std::isfinite(amax)) s.record_amax(amax);  // an inf is the loss's problem, not the scale's
      amax = 0;
    };
    record(x, x_amax);
    record(w, w_amax);
    record(g, g_amax);
  }

  Fp8Recipe& r_;
  Fp8Scale x, w, g;
  float x_amax = 0, w_amax = 0, g_amax = 0;

 private:
  // The delayed scale, or before any history the just-in-time one of the tensor at hand.
  static float scale(Backend& be, const Fp8Scale& s, const void* t, int64_t n) {
    return s.has_history() ? s.pow2_scale() : s.pow2_scale_for(be.amax(DType::bf16, t, n));
  }
  // 1 / (sa sb): exact for powers of two.
  static float unscale(float sa, float sb) { return float(1.0 / (double(sa) * double(sb))); }
  // W's codes with C contiguous, (OC, C), for the forward product (by_oc false), or with OC
  // contiguous, (C, OC), for the input gradient's; transposed from W's layout where it differs.
  static void quantize_weight(Backend& be, const GemmShape& s, uint8_t* q, const void* w, float sw, bool by_oc,
                              float* amax) {
    const bool out_in = s.layout == WeightLayout::out_in;  // W (OC, C); else (C, OC)
    const int64_t rows = out_in ? s.OC : s.C, cols = out_in ? s.C : s.OC;
    be.quantize_fp8(DType::fp8_e4m3, q, w, rows, cols, sw, out_in == by_oc, amax);
  }
  // This site's amax k (x, w, g) in the backend's table (Fp8Recipe::amax_dev_).
  float* amax_slot(int k) { return r_.amax_dev_.as<float>() + 3 * index_ + k; }
  int64_t index_;
};

namespace {
uint16_t* grown(Tensor& t, int64_t n, Backend& be) {
  if (t.numel() < n) t = Tensor({n}, DType::bf16, be);
  return t.as<uint16_t>();
}
}  // namespace

Fp8Recipe::Fp8Recipe(Model& model, const Fp8ScalingConfig& cfg)
    : model_(model),
      hardware_(model.backend().supports(Op::gemm, DType::fp8_e4m3)),
      real_(cfg.gemm == "real" || (cfg.gemm == "auto" && hardware_)) {
  MESHLM_CHECK(model.dtype() == DType::bf16, "fp8 needs the bf16 compute dtype");
  cfg.validate();
  const std::vector<Linear*> mine = model.block_linears();
  const std::vector<int64_t> layers = model.stage().layers(model.config().n_layer);  // of mine, in order
  const int64_t per_block = int64_t(mine.size()) / std::max<int64_t>(1, int64_t(layers.size()));
  for (int64_t i = 0; i < per_block * model.config().n_layer; i++) sites_.push_back(std::make_unique<Site>(*this, cfg, i));
  if (real_) amax_dev_ = Tensor({3 * int64_t(sites_.size())}, DType::fp32, model.backend());
  for (size_t i = 0; i < mine.size(); i++)  // the sites are numbered by global layer
    mine[i]->set_quantizer(sites_[size_t(layers[i / size_t(per_block)] * per_block) + i % size_t(per_block)].get());
}

Fp8Recipe::~Fp8Recipe() {
  for (Linear* l : model_.block_linears()) l->set_quantizer(nullptr);
}

uint16_t* Fp8Recipe::scratch(Tensor& t, int64_t n, Backend& be) { return grown(t, n, be); }

uint8_t* Fp8Recipe::codes(Tensor& t, int64_t n, Backend& be) {
  if (t.numel() < n) t = Tensor({n}, DType::fp8_e4m3, be);
  return static_cast<uint8_t*>(t.data());
}

// The real path's amaxes of the step so far, from the backend's table into the sites (one
// download a step), the table zeroed for the next.
void Fp8Recipe::fold_device_amaxes() {
  if (!real_) return;
  std::vector<float> a(size_t(amax_dev_.numel()));
  Backend& be = model_.backend();
  be.download(a.data(), amax_dev_.data(), a.size() * 4);
  be.zero(amax_dev_.data(), a.size() * 4);
  for (size_t i = 0; i < sites_.size(); i++) {
    sites_[i]->x_amax = std::max(sites_[i]->x_amax, a[3 * i]);
    sites_[i]->w_amax = std::max(sites_[i]->w_amax, a[3 * i + 1]);
    sites_[i]->g_amax = std::max(sites_[i]->g_amax, a[3 * i + 2]);
  }
}

void Fp8Recipe::end_step() {
  fold_device_amaxes();
  for (auto& s : sites_) s->end_step();
}

std::vector<float> Fp8Recipe::step_amaxes() {
  fold_device_amaxes();
  std::vector<float> a;
  for (const auto& s : sites_) a.insert(a.end(), {s->x_amax, s->w_amax, s->g_amax});
  return a;
}

void Fp8Recipe::set_step_amaxes(const std::vector<float>& a) {
  MESHLM_CHECK(a.size() == 3 * sites_.size(), "fp8: wrong number of amaxes");
  for (size_t i = 0; i < sites_.size(); i++) {
    sites_[i]->x_amax = a[3 * i];
    sites_[i]->w_amax = a[3 * i + 1];
    sites_[i]->g_amax = a[3 * i + 2];
  }
}

nlohmann::json Fp8Recipe::state() const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : sites_) j.push_back({s->x.to_json(), s->w.to_json(), s->g.to_json()});
  return j;
}

void Fp8Recipe::set_state(const nlohmann::json& j) {
  MESHLM_CHECK(j.is_array() && j.size() == sites_.size(),
               "fp8 state: expected " + std::to_string(sites_.size()) + " sites");
  for (size_t i = 0; i < sites_.size(); i++) {
    sites_[i]->x.from_json(j[i].at(0));
    sites_[i]->w.from_json(j[i].at(1));
    sites_[i]->g.from_json(j[i].at(2));
  }
}

}  // namespace meshlm
