#include "optim/adamw.h"

#include <cmath>

#include "core/error.h"
#include "precision/fp16_pure.h"

namespace meshlm {

AdamW::AdamW(const ParamTable& table, DType dtype, const AdamWConfig& cfg)
    : table_(table), cfg_(cfg), m_({table.total()}, dtype), v_({table.total()}, dtype) {}

void AdamW::step(Backend& be, Tensor& params, const Tensor& grads, float lr, float grad_scale,
                 int64_t step, bool fp16_storage) {
  const size_t esz = dtype_size(params.dtype());
  auto at = [&](auto* base, int64_t off) {
    return reinterpret_cast<decltype(base)>(reinterpret_cast<uintptr_t>(base) + off * esz);
  };
  for (const auto& e : table_.entries()) {
    AdamWArgs a{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, e.weight_decay ? cfg_.weight_decay : 0.0f,
                grad_scale, step};
    if (fp16_storage) {
      MESHLM_CHECK(params.dtype() == DType::fp32, "fp16-storage AdamW runs on fp32 containers");
      adamw_update_fp16_storage(at(params.as<float>(), e.offset), at(grads.as<float>(), e.offset),
                                at(m_.as<float>(), e.offset), at(v_.as<float>(), e.offset),
                                e.numel(), a);
      continue;
    }
    be.adamw_update(params.dtype(), at(params.data(), e.offset), at(grads.data(), e.offset),
                    at(m_.data(), e.offset), at(v_.data(), e.offset), e.numel(), a);
  }
}

double grad_norm(Backend& be, const Tensor& grads) {
  return std::sqrt(be.sum_squares(grads.dtype(), grads.data(), grads.numel()));
}

float clip_factor(double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
  return float(max_norm / (norm + 1e-6));
}

}  // namespace meshlm
