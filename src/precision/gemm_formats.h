// The GEMM formats of the precision ladder: which element format and scale each operand of a
// Linear's products is quantized to (simulated: quantize_blocks rounds for real, the product
// runs in bf16 with fp32 accumulation; docs/numerics.md).
//
//   name          x, W (forward)        output gradient     scale
//   bf16          -                     -                   (not quantized)
//   fp8-current   e4m3                  e5m2                pow2 per tensor, from the tensor at hand
//   fp8-rowwise   e4m3                  e5m2                pow2 per vector along the reduction
//   mxfp8         e4m3                  e4m3                e8m0 per 32 (OCP MX)
//   mxfp8-e5m2    e4m3                  e5m2                e8m0 per 32
//   mxfp6         e2m3                  e3m2                e8m0 per 32
//   mxfp4         e2m1                  e2m1                e8m0 per 32
//   nvfp4         e2m1                  e2m1                e4m3 per 16 x fp32 per tensor
//
// Options, appended with '+': sr (stochastic rounding of the output gradient), rht (a random
// Hadamard transform of the weight-gradient product's inputs, x and the output gradient, along
// their shared token axis), 2d (weights scaled per block x block tile, so forward and backward
// read one quantized weight), ocp (MX scales by the OCP rule, floor(log2 amax) - emax, which
// lets the largest values saturate, instead of rounding the scale up), recipe (sr+rht+2d: the
// NVFP4 training recipe). "nvfp4+recipe" is NVFP4 as its authors train with it; "mxfp4" alone
// is the naive 4-bit baseline.
//
// Each operand is scaled along its product's reduction axis: forward x along C and W along C;
// backward the output gradient along OC with W along OC (input gradient), and x and the
// output gradient along the N tokens (weight gradient).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/formats.h"

namespace meshlm {

enum class Operand : uint8_t { x, w, g };

struct GemmFormat {
  std::string name;  // as given, options included ("nvfp4+recipe")
  std::string base;  // "mxfp4"
  bool quantized = false;
  Elem x = Elem::e4m3, w = Elem::e4m3, g = Elem::e5m2;
  ScaleKind scale = ScaleKind::e8m0;
  Granularity granularity = Granularity::block;
  int64_t block = 32;
  bool stochastic_grads = false, hadamard_wgrad = false, tile_weights = false, ocp_scale = false;

  // The spec of one operand scaled along `axis` of its (rows, cols) matrix; `wgrad`: for the
  // weight-gradient product (the Hadamard option applies there).
  QuantSpec spec(Operand op, int axis, bool wgrad) const;
  // Bits per value of the forward operands (x and W averaged, scales counted): 16 for bf16,
  // 4.25 for mxfp4.
  double bits() const;
};

// Parses "base[+option...]"; throws naming the unknown part and listing the names.
GemmFormat gemm_format(const std::string& name);
// The base names, from the most bits to the fewest.
const std::vector<std::string>& gemm_format_names();
// The next format up the ladder from `base` (mxfp4, nvfp4 -> mxfp6 -> mxfp8 -> bf16;
// fp8-current, fp8-rowwise, mxfp8-e5m2 -> bf16); "" from bf16.
std::string promoted_format(const std::string& base);

}  // namespace meshlm
