#include "precision/gemm_formats.h"

#include <sstream>

#include "core/error.h"

namespace meshlm {

namespace {

GemmFormat base_format(const std::string& base) {
  GemmFormat f;
  f.base = base;
  f.quantized = base != "bf16";
  auto set = [&](Elem x, Elem w, Elem g, ScaleKind s, Granularity gr, int64_t block) {
    f.x = x, f.w = w, f.g = g, f.scale = s, f.granularity = gr, f.block = block;
  };
  if (base == "bf16") return f;
  if (base == "fp8-current") set(Elem::e4m3, Elem::e4m3, Elem::e5m2, ScaleKind::pow2, Granularity::tensor, 0);
  else if (base == "fp8-rowwise") set(Elem::e4m3, Elem::e4m3, Elem::e5m2, ScaleKind::pow2, Granularity::vector, 0);
  else if (base == "mxfp8") set(Elem::e4m3, Elem::e4m3, Elem::e4m3, ScaleKind::e8m0, Granularity::block, 32);
  else if (base == "mxfp8-e5m2") set(Elem::e4m3, Elem::e4m3, Elem::e5m2, ScaleKind::e8m0, Granularity::block, 32);
  else if (base == "mxfp6") set(Elem::e2m3, Elem::e2m3, Elem::e3m2, ScaleKind::e8m0, Granularity::block, 32);
  else if (base == "mxfp4") set(Elem::e2m1, Elem::e2m1, Elem::e2m1, ScaleKind::e8m0, Granularity::block, 32);
  else if (base == "nvfp4") set(Elem::e2m1, Elem::e2m1, Elem::e2m1, ScaleKind::e4m3, Granularity::block, 16);
  else return {};
  return f;
}

std::string names_list() {
  std::string s;
  for (const std::string& n : gemm_format_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

const std::vector<std::string>& gemm_format_names() {
  static const std::vector<std::string> names = {"bf16",       "fp8-current", "fp8-rowwise", "mxfp8",
                                                 "mxfp8-e5m2", "mxfp6",       "mxfp4",       "nvfp4"};
  return names;
}

GemmFormat gemm_format(const std::string& name) {
  std::stringstream parts(name);
  std::string base, opt;
  std::getline(parts, base, '+');
  GemmFormat f = base_format(base);
  if (f.base.empty())
    throw Error("unknown GEMM format '" + base + "' (expected one of " + names_list() + ", options +sr +rht +2d +ocp +recipe)");
  f.name = name;
  while (std::getline(parts, opt, '+')) {
    MESHLM_CHECK(f.quantized, "'" + name + "': bf16 takes no options");
    if (opt == "sr") f.stochastic_grads = true;
    else if (opt == "rht") f.hadamard_wgrad = true;
    else if (opt == "2d") f.tile_weights = true;
    else if (opt == "recipe") f.stochastic_grads = f.hadamard_wgrad = f.tile_weights = true;
    else if (opt == "ocp") f.ocp_scale = true;
    else throw Error("'" + name + "': unknown option '+" + opt + "' (expected sr, rht, 2d, ocp or recipe)");
  }
  MESHLM_CHECK(!f.ocp_scale || f.scale == ScaleKind::e8m0, "'" + name + "': +ocp is a rule of MX (e8m0) scales");
  MESHLM_CHECK(!f.tile_weights || f.granularity == Granularity::block, "'" + name + "': +2d needs a block-scaled format");
  return f;
}

QuantSpec GemmFormat::spec(Operand op, int axis, bool wgrad) const {
  QuantSpec q;
  q.elem = op == Operand::x ? x : op == Operand::w ? w : g;
  q.scale = scale;
  q.granularity = granularity;
  q.axis = axis;
  q.block = block;
  q.round_up = !ocp_scale;
  if (op == Operand::w && tile_weights) q.granularity = Granularity::tile;
  q.hadamard = wgrad && hadamard_wgrad && op != Operand::w;
  q.stochastic = op == Operand::g && stochastic_grads;
  return q;
}

double GemmFormat::bits() const {
  if (!quantized) return 16;
  const QuantSpec a = spec(Operand::x, 1, false), b = spec(Operand::w, 0, false);
  return (a.bits_per_value() + b.bits_per_value()) / 2;
}

std::string promoted_format(const std::string& base) {
  if (base == "mxfp4" || base == "nvfp4") return "mxfp6";
  if (base == "mxfp6") return "mxfp8";
  if (base == "bf16" || base.empty()) return "";
  return "bf16";  // mxfp8, mxfp8-e5m2, fp8-current, fp8-rowwise
}

}  // namespace meshlm
