// Naive reference kernels, templated on the element type. Instantiated with double they are the
// oracle every fast kernel and every layer is tested against; with float they make the
// "reference" backend. Written for obviousness: plain loops in the textbook order, no threads.
// Same contracts as backend.h (including the += convention for gradients).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace meshlm::reference {

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      T acc = 0;
      for (int64_t k = 0; k < K; k++) {
        T a = ta ? A[k * lda + i] : A[i * lda + k];
        T b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      C[i * ldc + j] = alpha * acc + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
    }
}

// W element (c, o) for either layout.
template <class T>
inline T weight_at(const T* w, int64_t c, int64_t o, int64_t C, int64_t OC, WeightLayout layout) {
  return layout == WeightLayout::in_out ? w[c * OC + o] : w[o * C + c];
}

template <class T>
void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int64_t N, int64_t C,
                    int64_t OC, WeightLayout layout) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) {
      T acc = bias ? bias[o] : T(0);
      for (int64_t c = 0; c < C; c++) acc += inp[n * C + c] * weight_at(w, c, o, C, OC, layout);
      out[n * OC + o] = acc;
    }
}

template <class T>
void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w,
                     int64_t N, int64_t C, int64_t OC, WeightLayout layout) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) {
      T d = dout[n * OC + o];
      if (dbias) dbias[o] += d;
      for (int64_t c = 0; c < C; c++) {
        if (dinp) dinp[n * C + c] += d * weight_at(w, c, o, C, OC, layout);
        int64_t wi = layout == WeightLayout::in_out ? c * OC + o : o * C + c;
        dw[wi] += d * inp[n * C + c];
      }
    }
}

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* w, const T* b, int64_t N,
                       int64_t C) {
  const T eps = T(1e-5);
  for (int64_t n = 0; n < N; n++) {
    const T* x = inp + n * C;
    T m = 0;
    for (int64_t c = 0; c < C; c++) m += x[c];
    m /= T(C);
    T var = 0;
    for (int64_t c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
    var /= T(C);
    T s = T(1) / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; c++) out[n * C + c] = (x[c] - m) * s * w[c] + b[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class T>
void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; n++) {
    const T* x = inp + n * C;
    const T* g = dout + n * C;
    // dnorm = g * w; dx = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat))
    T mean_d = 0, mean_dx = 0;
    for (int64_t c = 0; c < C; c++) {
      T xhat = (x[c] - mean[n]) * rstd[n];
      mean_d += g[c] * w[c];
      mean_dx += g[c] * w[c] * xhat;
    }
    mean_d /= T(C);
    mean_dx /= T(C);
    for (int64_t c = 0; c < C; c++) {
      T xhat = (x[c] - mean[n]) * rstd[n];
      db[c] += g[c];
      dw[c] += g[c] * xhat;
      dinp[n * C + c] += rstd[n] * (g[c] * w[c] - mean_d - xhat * mean_dx);
    }
  }
}

template <class T>
void attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t T_, int64_t C,
                       int64_t NH) {
  const int64_t HS = C / NH;
  const T scale = T(1) / std::sqrt(T(HS));
  std::vector<T> p(T_);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T_; t++) {
        const T* q = qkv + (b * T_ + t) * 3 * C + h * HS;
        T mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const T* k = qkv + (b * T_ + j) * 3 * C + C + h * HS;
          T s = 0;
          for (int64_t i = 0; i < HS; i++) s += q[i] * k[i];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        T sum = 0;
        for (int64_t j = 0; j <= t; j++) sum += std::exp(p[j] - mx);
        T l = mx + std::log(sum);
        lse[(b * NH + h) * T_ + t] = l;
        T* o = out + (b * T_ + t) * C + h * HS;
        for (int64_t i = 0; i < HS; i++) o[i] = 0;
        for (int64_t j = 0; j <= t; j++) {
          const T* v = qkv + (b * T_ + j) * 3 * C + 2 * C + h * HS;
          T pj = std::exp(p[j] - l);
          for (int64_t i = 0; i < HS; i++) o[i] += pj * v[i];
        }
      }
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                        int64_t B, int64_t T_, int64_t C, int64_t NH) {
  const int64_t HS = C / NH;
  const T scale = T(1) / std::sqrt(T(HS));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T_; t++) {
        const T* q = qkv + (b * T_ + t) * 3 * C + h * HS;
        const T* go = dout + (b * T_ + t) * C + h * HS;
        const T* o = out + (b * T_ + t) * C + h * HS;
        T* dq = dqkv + (b * T_ + t) * 3 * C + h * HS;
        T l = lse[(b * NH + h) * T_ + t];
        T D = 0;  // sum_j p_j * dp_j = dout . out
        for (int64_t i = 0; i < HS; i++) D += go[i] * o[i];
        for (int64_t j = 0; j <= t; j++) {
          const T* k = qkv + (b * T_ + j) * 3 * C + C + h * HS;
          const T* v = qkv + (b * T_ + j) * 3 * C + 2 * C + h * HS;
          T* dk = dqkv + (b * T_ + j) * 3 * C + C + h * HS;
          T* dv = dqkv + (b * T_ + j) * 3 * C + 2 * C + h * HS;
          T s = 0, dp = 0;
          for (int64_t i = 0; i < HS; i++) {
            s += q[i] * k[i];
            dp += go[i] * v[i];
          }
          T p = std::exp(s * scale - l);
          T ds = p * (dp - D) * scale;
          for (int64_t i = 0; i < HS; i++) {
            dq[i] += ds * k[i];
            dk[i] += ds * q[i];
            dv[i] += p * go[i];
          }
        }
      }
}

template <class T>
inline T gelu_value(T x) {
  const T s = std::sqrt(T(2) / T(M_PI));
  return T(0.5) * x * (T(1) + std::tanh(s * (x + T(0.044715) * x * x * x)));
}

template <class T>
inline T gelu_derivative(T x) {
  const T s = std::sqrt(T(2) / T(M_PI));
  T u = s * (x + T(0.044715) * x * x * x);
  T th = std::tanh(u);
  T du = s * (T(1) + T(3) * T(0.044715) * x * x);
  return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du;
}

template <class T>
void gelu_forward(T* out, const T* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = gelu_value(inp[i]);
}

template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
  for (int64_t i = 0; i < n; i++) dinp[i] += gelu_derivative(inp[i]) * dout[i];
}

template <class T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t T_, int64_t C) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T_; t++)
      for (int64_t c = 0; c < C; c++) {
        const int32_t tok = tokens[b * T_ + t];  // < 0: not in this rank's vocabulary slice
        out[(b * T_ + t) * C + c] = (tok >= 0 ? wte[int64_t(tok) * C + c] : T(0)) + (wpe ? wpe[t * C + c] : T(0));
      }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t T_, int64_t C) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T_; t++)
      for (int64_t c = 0; c < C; c++) {
        T d = dout[(b * T_ + t) * C + c];
        if (tokens[b * T_ + t] >= 0) dwte[int64_t(tokens[b * T_ + t]) * C + c] += d;
        if (dwpe) dwpe[t * C + c] += d;
      }
}

// The two halves of the vocabulary-parallel cross-entropy (backend.h).
template <class T>
void logsumexp_rows(T* lse, const T* logits, int64_t N, int64_t V, int64_t Vp) {
  for (int64_t n = 0; n < N; n++) {
    const T* row = logits + n * Vp;
    T mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = std::max(mx, row[v]);
    T sum = 0;
    for (int64_t v = 0; v < V; v++) sum += std::exp(row[v] - mx);
    lse[n] = V > 0 ? mx + std::log(sum) : T(-INFINITY);
  }
}

template <class T>
void crossentropy_backward_given_lse(T* logits, const T* lse, const int32_t* targets, T dloss,
                                     int64_t N, int64_t V, int64_t Vp) {
  for (int64_t n = 0; n < N; n++) {
    T* row = logits + n * Vp;
    for (int64_t v = 0; v < V; v++)
      row[v] = dloss * (std::exp(row[v] - lse[n]) - (v == targets[n] ? T(1) : T(0)));
    for (int64_t v = V; v < Vp; v++) row[v] = 0;
  }
}

template <class T>
void crossentropy_forward_backward(T* losses, T* logits, const int32_t* targets, T dloss,
                                   int64_t N, int64_t V, int64_t Vp) {
  for (int64_t n = 0; n < N; n++) {
    T* row = logits + n * Vp;
    T mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = std::max(mx, row[v]);
    T sum = 0;
    for (int64_t v = 0; v < V; v++) sum += std::exp(row[v] - mx);
    T lse = mx + std::log(sum);
    losses[n] = lse - row[targets[n]];
    if (dloss != T(0)) {
      for (int64_t v = 0; v < V; v++)
        row[v] = dloss * (std::exp(row[v] - lse) - (v == targets[n] ? T(1) : T(0)));
      for (int64_t v = V; v < Vp; v++) row[v] = 0;
    }
  }
}

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamWArgs& a) {
  const T b1 = a.beta1, b2 = a.beta2;
  const T c1 = T(1) - std::pow(b1, T(a.step)), c2 = T(1) - std::pow(b2, T(a.step));
  for (int64_t i = 0; i < n; i++) {
    T grad = g[i] * T(a.grad_scale);
    m[i] = b1 * m[i] + (T(1) - b1) * grad;
    v[i] = b2 * v[i] + (T(1) - b2) * grad * grad;
    T mhat = m[i] / c1, vhat = v[i] / c2;
    p[i] -= T(a.lr) * (mhat / (std::sqrt(vhat) + T(a.eps)) + T(a.weight_decay) * p[i]);
  }
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += double(x[i]) * double(x[i]);
  return s;
}

}  // namespace meshlm::reference
