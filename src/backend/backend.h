// The narrow kernel interface: every computation a training step needs, and nothing else.
// A kernel takes pointers, sizes and a dtype; it never allocates, never looks at the model or
// the mesh. Backends: "reference" (naive loops, fp32 and fp64: the oracle the tests trust) and
// "cpu" (oneDNN GEMMs + OpenMP/AVX-512 kernels, fp32). "cuda" comes later behind the same class.
//
// Shape letters: B batch, T time, C channels, OC output channels, NH heads, HS = C / NH,
// V vocabulary, Vp padded vocabulary, N = B * T rows.
//
// THE += CONVENTION: every backward kernel ADDS into its gradient outputs (dinp, dweight, ...),
// never overwrites, so gradients of shared inputs (the residual stream, the tied embedding)
// accumulate across uses and across micro-batches. Callers zero gradient buffers when needed.
// `dt` is the dtype of every floating-point buffer of the call; token ids are int32.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace meshlm {

enum class Op { gemm, matmul, layernorm, attention, gelu, residual, embedding, crossentropy, adamw,
                sum_squares };
const char* op_name(Op op);

// How a weight matrix is stored: in_out is (C, OC) (Hugging Face GPT-2 Conv1D),
// out_in is (OC, C) (nn.Linear and the tied embedding used as the LM head).
enum class WeightLayout { in_out, out_in };

struct AdamWArgs {
  float lr = 3e-4f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: param -= lr * wd * param
  float grad_scale = 1.0f;    // grads are multiplied by this first (clipping, loss-scale undo)
  int64_t step = 1;           // 1-based, for bias correction
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual bool supports(Op op, DType dt) const = 0;

  // C(M, N) = alpha * op(A) @ op(B) + beta * C, row-major with leading dimensions;
  // op(A) is (M, K), op(B) is (K, N). A and B hold `dt`; C holds its accumulation type: fp64
  // for fp64, fp32 otherwise (bf16 operands are multiplied exactly and summed in fp32).
  virtual void gemm(DType dt, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const void* A, int64_t lda, const void* B, int64_t ldb,
                    float beta, void* C, int64_t ldc) = 0;

  // out (N, OC) = inp (N, C) @ W + bias (OC) (bias may be null); W per `layout`.
  virtual void matmul_forward(DType dt, void* out, const void* inp, const void* weight,
                              const void* bias, int64_t N, int64_t C, int64_t OC,
                              WeightLayout layout) = 0;
  // dinp (N, C) += dout @ W^T, dweight += (inp^T @ dout in W's layout), dbias (OC) += colsum(dout).
  // dinp and dbias may be null.
  virtual void matmul_backward(DType dt, void* dinp, void* dweight, void* dbias, const void* dout,
                               const void* inp, const void* weight, int64_t N, int64_t C,
                               int64_t OC, WeightLayout layout) = 0;

  // out (N, C) = (inp - mean) * rstd * weight + bias; saves mean (N), rstd (N). eps = 1e-5.
  virtual void layernorm_forward(DType dt, void* out, void* mean, void* rstd, const void* inp,
                                 const void* weight, const void* bias, int64_t N, int64_t C) = 0;
  virtual void layernorm_backward(DType dt, void* dinp, void* dweight, void* dbias,
                                  const void* dout, const void* inp, const void* weight,
                                  const void* mean, const void* rstd, int64_t N, int64_t C) = 0;

  // Causal multi-head self-attention. qkv (B, T, 3C) holds q, k, v side by side, head h in
  // channels [h*HS, (h+1)*HS) of each; out (B, T, C); lse (B, NH, T) saves each row's
  // log-sum-exp of scaled scores so backward recomputes the probabilities (a T x T matrix
  // exists only while one (batch, head) pair is processed; none is kept between calls).
  virtual void attention_forward(DType dt, void* out, void* lse, const void* qkv, int64_t B,
                                 int64_t T, int64_t C, int64_t NH) = 0;
  virtual void attention_backward(DType dt, void* dqkv, const void* dout, const void* qkv,
                                  const void* out, const void* lse, int64_t B, int64_t T,
                                  int64_t C, int64_t NH) = 0;

  // GELU, tanh approximation (GPT-2's "gelu_new").
  virtual void gelu_forward(DType dt, void* out, const void* inp, int64_t n) = 0;
  virtual void gelu_backward(DType dt, void* dinp, const void* inp, const void* dout, int64_t n) = 0;

  // out (n) = a + b.
  virtual void residual_forward(DType dt, void* out, const void* a, const void* b, int64_t n) = 0;

  // out (B, T, C) = wte[tokens[b, t]] + wpe[t]; backward scatter-adds into dwte, dwpe. For a
  // vocabulary split across ranks: a negative token id contributes no wte row (and gets no
  // gradient), and wpe / dwpe may be null (no position term).
  virtual void embedding_forward(DType dt, void* out, const int32_t* tokens, const void* wte,
                                 const void* wpe, int64_t B, int64_t T, int64_t C) = 0;
  virtual void embedding_backward(DType dt, void* dwte, void* dwpe, const void* dout,
                                  const int32_t* tokens, int64_t B, int64_t T, int64_t C) = 0;

  // Softmax + cross-entropy over the first V of Vp columns of logits (N, Vp): losses (N) =
  // -log softmax(logits)[target]. If dloss != 0, logits are overwritten IN PLACE by their
  // gradient dloss * (softmax - onehot(target)), with columns >= V set to 0 (padding never
  // changes the loss). Targets must be in [0, V).
  virtual void crossentropy_forward_backward(DType dt, void* losses, void* logits,
                                             const int32_t* targets, float dloss, int64_t N,
                                             int64_t V, int64_t Vp) = 0;

  // The vocabulary-parallel cross-entropy, in two halves around reductions across ranks.
  // lse (N) = log sum exp of each row's first V of Vp columns (-inf when V = 0); lse is in the
  // accumulation dtype (fp32, or fp64 for fp64).
  virtual void logsumexp_rows(DType dt, void* lse, const void* logits, int64_t N, int64_t V,
                              int64_t Vp) = 0;
  // logits (N, Vp) IN PLACE <- dloss * (exp(logits - lse) - onehot(target)) over the first V
  // columns, columns >= V set to 0; lse is the whole row's (over every rank's columns) and
  // targets[n] < 0 means the target column is on another rank.
  virtual void crossentropy_backward_given_lse(DType dt, void* logits, const void* lse,
                                               const int32_t* targets, float dloss, int64_t N,
                                               int64_t V, int64_t Vp) = 0;

  // One AdamW step over n elements of flat buffers; m and v are the moments.
  virtual void adamw_update(DType dt, void* param, const void* grad, void* m, void* v, int64_t n,
                            const AdamWArgs& args) = 0;

  // Sum of squares of n elements, accumulated in double.
  virtual double sum_squares(DType dt, const void* x, int64_t n) = 0;
};

// "cpu" or "reference"; throws meshlm::Error on anything else.
std::unique_ptr<Backend> make_backend(const std::string& name);
std::unique_ptr<Backend> make_reference_backend();
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace meshlm
