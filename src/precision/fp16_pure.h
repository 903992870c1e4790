// The naive pure-fp16 recipe ("cast the model to half and train"), kept to show why mixed
// precision exists. Weights, gradients and both Adam moments are fp16 values; meshlm keeps
// them in its fp32 buffers but rounds every stored value to fp16, so the arithmetic is that of
// fp16 storage with fp32 operations rounded once per operation - the way PyTorch's eager fp16
// AdamW computes. That is where the recipe fails: eps = 1e-8 rounds to 0 in fp16, a second
// moment below 2^-24 underflows to 0, and a zero denominator turns an update into inf or NaN.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace meshlm {

// x[i] = fp16(x[i]) (round to nearest even; beyond 65504 -> inf).
void round_to_fp16(float* x, int64_t n);

// One AdamW step in fp16 storage: each operation of PyTorch's single-tensor AdamW rounded to
// fp16 (decay, the two moment updates, sqrt, the bias-correction division, + eps, the update).
void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n,
                               const AdamWArgs& a);

}  // namespace meshlm
