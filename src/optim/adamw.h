// AdamW over the flat parameter buffer, with its moments as flat buffers of the same layout
// (so a ZeRO-1 shard is a slice). Weight decay is decoupled and applies to 2-D weights only.
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/params.h"

namespace meshlm {

// The 16-bit weight refresh fused into the update (the backend's adamw_update_round): the
// updated parameters rounded to nearest even into `at`, which holds the same elements as the
// parameters step() is given (at = nullptr: no copy written).
struct RoundedCopy {
  DType dt = DType::fp32;
  void* at = nullptr;
};

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;
};

class AdamW {
 public:
  // Owns the moments of the elements [begin, end) of the flat buffers (end < 0: all of them),
  // in `be`'s memory; ZeRO-1 gives each data-parallel rank its own slice. step() updates only
  // those elements.
  AdamW(Backend& be, const ParamTable& table, DType dtype, const AdamWConfig& cfg, int64_t begin = 0,
        int64_t end = -1);
  // One update with learning rate lr; grads are multiplied by grad_scale first (clipping).
  // `step` is 1-based and drives bias correction.
  // fp16_storage: the pure-fp16 recipe's update (the backend's adamw_update_fp16_storage).
  void step(Tensor& params, const Tensor& grads, float lr, float grad_scale, int64_t step,
            bool fp16_storage = false);
  // The same on buffers that hold only [begin, end) (sharded masters and gradients, ZeRO-2/3):
  // params and grads point at element `begin`.
  void step(DType dt, void* params, const void* grads, float lr, float grad_scale, int64_t step,
            bool fp16_storage = false, RoundedCopy copy = {});
  Backend& backend() const { return be_; }
  Tensor& m() { return m_; }  // (end - begin,) first moments
  Tensor& v() { return v_; }  // (end - begin,) second moments
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }

 private:
  Backend& be_;
  const ParamTable& table_;
  AdamWConfig cfg_;
  int64_t begin_, end_;
  Tensor m_, v_;
};

// Global L2 norm of the whole gradient buffer.
double grad_norm(Backend& be, const Tensor& grads);
// The factor that brings the norm down to max_norm (1 if already below, or max_norm <= 0).
float clip_factor(double norm, double max_norm);

}  // namespace meshlm
