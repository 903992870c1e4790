// Fused softmax + cross-entropy on CPU. Each row of logits (Vp floats, 200 KB for GPT-2) is
// read three times while it sits in L2: max, sum of exponentials, then the gradient written
// over the logits in place. No probability buffer exists beyond the logits themselves. The
// vocabulary-parallel halves (log-sum-exp of this rank's columns; the gradient given the whole
// row's) are the same row functions.
#include <cmath>

#include "backend/cpu/kernels.h"

namespace meshlm::cpu {

float logsumexp_row(const float* row, int64_t V) {
  if (V == 0) return -INFINITY;
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t v = 0; v < V; v++) mx = std::max(mx, row[v]);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t v = 0; v < V; v++) sum += std::exp(row[v] - mx);
  return mx + std::log(sum);
}

void crossentropy_grad_row(float* row, float lse, int64_t target, float dloss, int64_t V, int64_t Vp) {
#pragma omp simd
  for (int64_t v = 0; v < V; v++) row[v] = dloss * std::exp(row[v] - lse);
  if (target >= 0) row[target] -= dloss;
  for (int64_t v = V; v < Vp; v++) row[v] = 0.0f;
}

float crossentropy_row(float* row, int64_t target, float dloss, int64_t V, int64_t Vp) {
  const float lse = logsumexp_row(row, V);
  const float loss = lse - row[target];
  if (dloss != 0.0f) crossentropy_grad_row(row, lse, target, dloss, V, Vp);
  return loss;
}

void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets,
                                   float dloss, int64_t N, int64_t V, int64_t Vp) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    losses[n] = crossentropy_row(logits + n * Vp, targets[n], dloss, V, Vp);  // row (Vp)
}

void logsumexp_rows(float* lse, const float* logits, int64_t N, int64_t V, int64_t Vp) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) lse[n] = logsumexp_row(logits + n * Vp, V);
}

void crossentropy_backward_given_lse(float* logits, const float* lse, const int32_t* targets,
                                     float dloss, int64_t N, int64_t V, int64_t Vp) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) crossentropy_grad_row(logits + n * Vp, lse[n], targets[n], dloss, V, Vp);
}

}  // namespace meshlm::cpu
