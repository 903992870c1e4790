#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace meshlm {

AdamW::AdamW(Backend& be, const ParamTable& table, DType dtype, const AdamWConfig& cfg, int64_t begin, int64_t end)
    : be_(be),
      table_(table),
      cfg_(cfg),
      begin_(begin),
      end_(end < 0 ? table.total() : end),
      m_({end_ - begin_}, dtype, be),
      v_({end_ - begin_}, dtype, be) {
  MESHLM_CHECK(0 <= begin_ && begin_ <= end_ && end_ <= table.total(), "AdamW: bad element range");
}

void AdamW::step(Tensor& params, const Tensor& grads, float lr, float grad_scale, int64_t step,
                 bool fp16_storage) {
  const size_t esz = dtype_size(params.dtype());
  MESHLM_CHECK(params.numel() == table_.total() && grads.numel() == table_.total(), "AdamW: whole buffers expected");
  this->step(params.dtype(), static_cast<char*>(params.data()) + size_t(begin_) * esz,
       static_cast<const char*>(grads.data()) + size_t(begin_) * esz, lr, grad_scale, step, fp16_storage);
}

void AdamW::step(DType dt, void* params, const void* grads, float lr, float grad_scale, int64_t step,
                 bool fp16_storage, RoundedCopy copy) {
  MESHLM_CHECK(!copy.at || (dt == DType::fp32 && !fp16_storage), "AdamW: a rounded copy of fp32 parameters only");
  const size_t esz = dtype_size(dt);
  auto at = [&](auto* base, int64_t off) {  // element `off` of the flat buffers, stored from begin_
    return reinterpret_cast<decltype(base)>(reinterpret_cast<uintptr_t>(base) + (off - begin_) * esz);
  };
  for (const auto& e : table_.entries()) {
    // The part of this parameter inside [begin_, end_): elements [lo, hi) of the flat buffers,
    // moments at lo - begin_.
    const int64_t lo = std::max(e.offset, begin_), hi = std::min(e.offset + e.numel(), end_);
    if (lo >= hi) continue;
    AdamWArgs a{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, e.weight_decay ? cfg_.weight_decay : 0.0f,
                grad_scale, step};
    if (fp16_storage) {
      MESHLM_CHECK(dt == DType::fp32, "fp16-storage AdamW runs on fp32 containers");
      be_.adamw_update_fp16_storage(at(static_cast<float*>(params), lo), at(static_cast<const float*>(grads), lo),
                                    m_.as<float>() + (lo - begin_), v_.as<float>() + (lo - begin_), hi - lo, a);
      continue;
    }
    void* m = static_cast<char*>(m_.data()) + (lo - begin_) * esz;
    void* v = static_cast<char*>(v_.data()) + (lo - begin_) * esz;
    if (copy.at) {
      void* c = static_cast<char*>(copy.at) + (lo - begin_) * dtype_size(copy.dt);
      be_.adamw_update_round(dt, at(params, lo), at(grads, lo), m, v, hi - lo, a, copy.dt, c);
    } else {
      be_.adamw_update(dt, at(params, lo), at(grads, lo), m, v, hi - lo, a);
    }
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
