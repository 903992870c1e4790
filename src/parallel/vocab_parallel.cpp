#include "parallel/vocab_parallel.h"

#include <algorithm>

namespace meshlm {

void VocabParallelCrossEntropy::forward_backward(Backend& be, DType dt, void* losses, void* lse, void* logits,
                                                 const int32_t* targets, float dloss, int64_t N, int64_t V,
                                                 int64_t Vl) {
  if (!tp_.active()) return be.crossentropy_forward_backward(dt, losses, logits, targets, dloss, N, V, Vl);
  const int64_t v0 = Vl * tp_.rank();
  const int64_t Vv = std::clamp<int64_t>(V - v0, 0, Vl);  // real (unpadded) columns on this rank
  if (rows_.numel() < 3 * N) rows_ = Tensor({3 * N}, DType::fp32, be);
  if (local_.bytes() < size_t(N) * 4) local_ = Buffer(size_t(N) * 4, be);
  float* row_max = rows_.as<float>();  // (N) each
  float *sumexp = row_max + N, *target_logit = sumexp + N;
  int32_t* local = local_.as<int32_t>();
  be.logsumexp_rows(dt, lse, logits, N, Vv, Vl);
  be.copy(row_max, lse, size_t(N) * 4);
  tp_.max_rows(row_max, N);
  tp_.count_bytes(3 * N * 4);  // this and the two sums below
  be.crossentropy_partials(dt, sumexp, target_logit, local, lse, row_max, logits, targets, N, v0, Vl);
  tp_.sum_rows(sumexp, N);
  tp_.sum_rows(target_logit, N);
  be.crossentropy_combine(DType::fp32, lse, losses, row_max, sumexp, target_logit, N);
  if (dloss != 0.0f) be.crossentropy_backward_given_lse(dt, logits, lse, local, dloss, N, Vv, Vl);
}

}  // namespace meshlm
