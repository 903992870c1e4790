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
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"

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
        if (dw) dw[wi] += d * inp[n * C + c];
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

// One query row per head against `len` cached rows: the last row of attention_forward's
// causal softmax, computed alone.
template <class T>
void attention_decode(T* out, const T* q, const T* k, const T* v, const AttentionShape& a, int64_t len) {
  const int64_t HS = a.HS;
  const T scale = T(1) / std::sqrt(T(HS));
  std::vector<T> p(static_cast<size_t>(len));
  for (int64_t h = 0; h < a.NH; h++) {
    const int64_t kvh = h / a.group();
    T mx = -INFINITY;
    for (int64_t j = 0; j < len; j++) {
      T s = 0;
      for (int64_t i = 0; i < HS; i++) s += q[h * HS + i] * k[j * a.ldkv + kvh * HS + i];
      p[size_t(j)] = s * scale;
      mx = std::max(mx, p[size_t(j)]);
    }
    T sum = 0;
    for (int64_t j = 0; j < len; j++) sum += std::exp(p[size_t(j)] - mx);
    for (int64_t i = 0; i < HS; i++) out[h * HS + i] = 0;
    for (int64_t j = 0; j < len; j++) {
      const T pj = std::exp(p[size_t(j)] - mx) / sum;
      for (int64_t i = 0; i < HS; i++) out[h * HS + i] += pj * v[j * a.ldkv + kvh * HS + i];
    }
  }
}

// Query head h of a (T, ld) row block reads key/value head h / group.
template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, const AttentionShape& a) {
  const int64_t T_ = a.T, HS = a.HS, C = a.NH * HS;
  const T scale = T(1) / std::sqrt(T(HS));
  std::vector<T> p(T_);
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.NH; h++) {
      const int64_t kvh = h / a.group();
      for (int64_t t = 0; t < T_; t++) {
        const T* qt = q + (b * T_ + t) * a.ldq + h * HS;
        T mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
          const T* kj = k + (b * T_ + j) * a.ldkv + kvh * HS;
          T s = 0;
          for (int64_t i = 0; i < HS; i++) s += qt[i] * kj[i];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        T sum = 0;
        for (int64_t j = 0; j <= t; j++) sum += std::exp(p[j] - mx);
        T l = mx + std::log(sum);
        lse[(b * a.NH + h) * T_ + t] = l;
        T* o = out + (b * T_ + t) * C + h * HS;
        for (int64_t i = 0; i < HS; i++) o[i] = 0;
        for (int64_t j = 0; j <= t; j++) {
          const T* vj = v + (b * T_ + j) * a.ldkv + kvh * HS;
          T pj = std::exp(p[j] - l);
          for (int64_t i = 0; i < HS; i++) o[i] += pj * vj[i];
        }
      }
    }
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, const AttentionShape& a) {
  const int64_t T_ = a.T, HS = a.HS, C = a.NH * HS;
  const T scale = T(1) / std::sqrt(T(HS));
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.NH; h++) {
      const int64_t kvh = h / a.group();
      for (int64_t t = 0; t < T_; t++) {
        const T* qt = q + (b * T_ + t) * a.ldq + h * HS;
        const T* go = dout + (b * T_ + t) * C + h * HS;
        const T* o = out + (b * T_ + t) * C + h * HS;
        T* dqt = dq + (b * T_ + t) * a.ldq + h * HS;
        T l = lse[(b * a.NH + h) * T_ + t];
        T D = 0;  // sum_j p_j * dp_j = dout . out
        for (int64_t i = 0; i < HS; i++) D += go[i] * o[i];
        for (int64_t j = 0; j <= t; j++) {
          const int64_t row = (b * T_ + j) * a.ldkv + kvh * HS;
          T s = 0, dp = 0;
          for (int64_t i = 0; i < HS; i++) {
            s += qt[i] * k[row + i];
            dp += go[i] * v[row + i];
          }
          T p = std::exp(s * scale - l);
          T ds = p * (dp - D) * scale;
          for (int64_t i = 0; i < HS; i++) {
            dqt[i] += ds * k[row + i];
            dk[row + i] += ds * qt[i];
            dv[row + i] += p * go[i];
          }
        }
      }
    }
}

template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* w, int64_t N, int64_t C, T eps) {
  for (int64_t n = 0; n < N; n++) {
    const T* x = inp + n * C;
    T ms = 0;
    for (int64_t c = 0; c < C; c++) ms += x[c] * x[c];
    const T r = T(1) / std::sqrt(ms / T(C) + eps);
    for (int64_t c = 0; c < C; c++) out[n * C + c] = x[c] * r * w[c];
    rstd[n] = r;
  }
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2): dx = r (g w) - r^3 x mean(g w x), dw += g x r.
template <class T>
void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const T* rstd, int64_t N,
                      int64_t C) {
  for (int64_t n = 0; n < N; n++) {
    const T* x = inp + n * C;
    const T* g = dout + n * C;
    const T r = rstd[n];
    T dot = 0;
    for (int64_t c = 0; c < C; c++) dot += g[c] * w[c] * x[c];
    dot /= T(C);
    for (int64_t c = 0; c < C; c++) {
      dinp[n * C + c] += r * g[c] * w[c] - r * r * r * x[c] * dot;
      dw[c] += g[c] * x[c] * r;
    }
  }
}

// sign +1 rotates forward, -1 back (the transpose: the gradient's rotation).
template <class T, class S>
void rope_rotate(T* x, const S* cos_sin, int64_t B, int64_t T_, int64_t H, int64_t HS, int sign) {
  const int64_t half = HS / 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < H; h++) {
        T* row = x + ((b * T_ + t) * H + h) * HS;
        for (int64_t i = 0; i < half; i++) {
          const T c = T(cos_sin[(t * half + i) * 2]), s = T(sign) * T(cos_sin[(t * half + i) * 2 + 1]);
          const T x1 = row[i], x2 = row[i + half];
          row[i] = x1 * c - x2 * s;
          row[i + half] = x2 * c + x1 * s;
        }
      }
}

template <class T>
inline T silu_value(T g) {
  return g / (T(1) + std::exp(-g));
}

template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = silu_value(gate[i]) * up[i];
}

// silu'(g) = s (1 + g (1 - s)) with s the logistic sigmoid.
template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const T s = T(1) / (T(1) + std::exp(-gate[i]));
    dgate[i] += dout[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
    dup[i] += dout[i] * gate[i] * s;
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

// ---- buffer utilities (ops.inc) ----

// n values of `from` -> `to` through fp32, with the format-table conversion of core/dtype.h
// (reference_float_to_bits), not the fast paths of core/lowp.h the cpu backend uses.
inline float to_f32_slow(DType dt, const void* x, int64_t i) {
  switch (dt) {
    case DType::fp32: return static_cast<const float*>(x)[i];
    case DType::fp64: return float(static_cast<const double*>(x)[i]);
    case DType::bf16: case DType::fp16: return bits_to_float(dt, static_cast<const uint16_t*>(x)[i]);
    default: return bits_to_float(dt, static_cast<const uint8_t*>(x)[i]);
  }
}
inline void convert(DType to, void* dst, DType from, const void* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    if (from == DType::fp64 && to == DType::fp64) {
      static_cast<double*>(dst)[i] = static_cast<const double*>(src)[i];
      continue;
    }
    const float x = to_f32_slow(from, src, i);
    switch (to) {
      case DType::fp32: static_cast<float*>(dst)[i] = x; break;
      case DType::fp64: static_cast<double*>(dst)[i] = double(x); break;
      case DType::bf16: case DType::fp16: static_cast<uint16_t*>(dst)[i] = reference_float_to_bits(to, x); break;
      default: static_cast<uint8_t*>(dst)[i] = uint8_t(reference_float_to_bits(to, x)); break;
    }
  }
}
inline void convert_stochastic(DType to, uint16_t* dst, const float* src, int64_t n, uint64_t seed, uint64_t stream,
                               int64_t index0) {
  for (int64_t i = 0; i < n; i++) dst[i] = float_to_bits_stochastic(to, src[i], random_u32(seed, stream, uint64_t(index0 + i)));
}
inline void round_to_format(DType format, float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = bits_to_float(format, reference_float_to_bits(format, x[i]));
}
template <class T>
void accumulate(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}
template <class T>
double sum(const T* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += double(x[i]);
  return s;
}
// Classifies each value against `format`'s range: the definition the cpu kernel blocks up.
inline TensorStats tensor_stats(DType format, DType stored, const void* x, int64_t n) {
  const FormatRange r = format_range(format);
  const double max_finite = r.max_finite, min_normal = r.min_normal, min_sub = r.min_subnormal;
  TensorStats s;
  s.n = n;
  for (int64_t i = 0; i < n; i++) {
    const double a = std::fabs(double(to_f32_slow(stored, x, i)));
    if (!std::isfinite(a) || a > max_finite) {
      s.overflow++;
    } else {
      s.amax = std::max(s.amax, a);
      if (a == 0) s.zero++;
      else if (a < 0.5 * min_sub) s.underflow++;
      else if (a < min_normal) s.subnormal++;
    }
  }
  return s;
}
// max |x| over the finite values of bf16 x.
inline float amax_bf16(const uint16_t* x, int64_t n) {
  float amax = 0;
  for (int64_t i = 0; i < n; i++) {
    const float a = std::fabs(bits_to_float(DType::bf16, x[i]));
    if (std::isfinite(a)) amax = std::max(amax, a);
  }
  return amax;
}
// bf16(fp8(x * scale) / scale), saturating: the fp8 value of the clamped product by the format
// table, read back and divided by the scale.
inline float fake_quantize_bf16(DType format, uint16_t* y, const uint16_t* x, int64_t n, float scale) {
  const float max_finite = float(float_format(format).max_finite);
  float amax = 0;
  for (int64_t i = 0; i < n; i++) {
    const float v = bits_to_float(DType::bf16, x[i]);
    if (!std::isfinite(v)) {
      y[i] = x[i];
      continue;
    }
    amax = std::max(amax, std::fabs(v));
    const float r = std::clamp(v * scale, -max_finite, max_finite);
    const float q = bits_to_float(format, reference_float_to_bits(format, r));
    y[i] = reference_float_to_bits(DType::bf16, q / scale);
  }
  return amax;
}
// The fp8 code of one bf16 value times scale (fake_quantize's rounding); NaN for a non-finite
// value in e4m3 (no inf there), the value's own inf or NaN in e5m2.
inline uint8_t fp8_code(DType format, float v, float scale) {
  const float max_finite = float(float_format(format).max_finite);
  if (!std::isfinite(v) && format == DType::fp8_e4m3) return uint8_t(std::signbit(v) ? 0xff : 0x7f);
  const float r = std::isfinite(v) ? std::clamp(v * scale, -max_finite, max_finite) : v;
  return uint8_t(reference_float_to_bits(format, r));
}
// q (rows, cols), or its transpose (cols, rows), = fp8 codes of x (rows, cols, bf16) * scale.
inline float quantize_fp8_bf16(DType format, uint8_t* q, const uint16_t* x, int64_t rows, int64_t cols, float scale,
                               bool transpose) {
  float amax = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const float v = bits_to_float(DType::bf16, x[r * cols + c]);
      if (std::isfinite(v)) amax = std::max(amax, std::fabs(v));
      q[transpose ? c * rows + r : r * cols + c] = fp8_code(format, v, scale);
    }
  return amax;
}
// C (M, N) = alpha A (M, K) @ B (N, K)^T + beta C [+ bias], fp8 codes decoded exactly, summed in
// double, C (and the bias) in dtype c (fp32 or bf16), rounded once.
inline void gemm_fp8(DType fa, DType fb, int64_t M, int64_t N, int64_t K, float alpha, const uint8_t* A, int64_t lda,
                     const uint8_t* B, int64_t ldb, float beta, DType c, void* C, int64_t ldc, const void* bias) {
  MESHLM_CHECK(c == DType::fp32 || c == DType::bf16, "gemm_fp8: C is fp32 or bf16");
  MESHLM_CHECK(!(fa == DType::fp8_e5m2 && fb == DType::fp8_e5m2), "gemm_fp8: A and B both e5m2");
  auto load = [c](const void* p, int64_t i) {
    return c == DType::fp32 ? double(static_cast<const float*>(p)[i])
                            : double(bits_to_float(DType::bf16, static_cast<const uint16_t*>(p)[i]));
  };
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t l = 0; l < K; l++)
        acc += double(bits_to_float(fa, A[i * lda + l])) * double(bits_to_float(fb, B[j * ldb + l]));
      double d = double(alpha) * acc + (beta == 0.0f ? 0.0 : double(beta) * load(C, i * ldc + j));
      if (bias) d += load(bias, j);
      if (c == DType::fp32) static_cast<float*>(C)[i * ldc + j] = float(d);
      else static_cast<uint16_t*>(C)[i * ldc + j] = reference_float_to_bits(DType::bf16, float(d));
    }
}
// quantize_blocks (ops.inc) spelled out (reference/quantize.cpp), and the element nearest v by
// the format's table of values, ties to the even code, saturating (non-finite v: as is).
TensorStats quantize_blocks_bf16(const QuantSpec& q, uint16_t* y, const uint16_t* x, int64_t rows, int64_t cols);
float round_elem_by_table(Elem e, float v);
// The vocabulary-parallel cross-entropy's row pieces (ops.inc).
template <class T>
void crossentropy_partials(DType dt, T* sumexp, T* target_logit, int32_t* local_targets, const T* lse,
                           const T* row_max, const T* logits, const int32_t* targets, int64_t N, int64_t v0, int64_t Vl) {
  for (int64_t n = 0; n < N; n++) {
    sumexp[n] = std::isfinite(lse[n]) ? std::exp(lse[n] - row_max[n]) : T(0);
    const int64_t t = targets[n] - v0;
    local_targets[n] = t >= 0 && t < Vl ? int32_t(t) : -1;
    target_logit[n] = local_targets[n] >= 0 ? logits[n * Vl + t] : T(0);
  }
}
template <class T>
void crossentropy_combine(T* lse, T* losses, const T* row_max, const T* sumexp, const T* target_logit, int64_t N) {
  for (int64_t n = 0; n < N; n++) {
    lse[n] = row_max[n] + std::log(sumexp[n]);
    losses[n] = lse[n] - target_logit[n];
  }
}
// The pure-fp16 recipe's AdamW, each operation of PyTorch's single-tensor AdamW rounded to
// fp16 (the values live in fp32 buffers) by `h` (a float -> float rounding to fp16; the
// default is core/dtype.h's).
inline float round_fp16(float x) { return bits_to_float(DType::fp16, float_to_bits(DType::fp16, x)); }
template <class Round = float (*)(float)>
void adamw_update_fp16_storage(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a,
                               Round h = round_fp16) {
  const float b1 = a.beta1, b2 = a.beta2;
  const float c1 = 1.0f - std::pow(b1, float(a.step)), c2 = 1.0f - std::pow(b2, float(a.step));
  const float step_size = a.lr / c1, c2_sqrt = std::sqrt(c2);
  const float decay = 1.0f - a.lr * a.weight_decay;
  for (int64_t i = 0; i < n; i++) {
    const float grad = h(g[i] * a.grad_scale);         // unscale / clip, in place on an fp16 grad
    float pi = h(p[i] * decay);                        // param.mul_(1 - lr * wd)
    float mi = h(m[i] + (1.0f - b1) * (grad - m[i]));  // exp_avg.lerp_(grad, 1 - beta1)
    float vi = h(v[i] * b2);                           // exp_avg_sq.mul_(beta2)
    vi = h(vi + (1.0f - b2) * grad * grad);            //   .addcmul_(grad, grad, 1 - beta2)
    float denom = h(std::sqrt(vi));                    // exp_avg_sq.sqrt()
    denom = h(denom / c2_sqrt);                        //   / bias_correction2_sqrt
    denom = h(denom + a.eps);                          //   .add_(eps): 1e-8 rounds away in fp16
    pi = h(pi - step_size * (mi / denom));             // param.addcdiv_(exp_avg, denom, -step_size)
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace meshlm::reference
