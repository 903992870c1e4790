// GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it: token + position embedding,
// L pre-LayerNorm blocks (ln_1 -> causal self-attention c_attn/c_proj -> residual, ln_2 ->
// MLP c_fc -> GELU(tanh) -> c_proj -> residual), ln_f, LM head tied to wte, no dropout.
// Written once, with unsharded shapes; explicit forward and backward through the Backend.
// The model owns its flat parameter and gradient buffers and its saved activations.
//
// Precision: the model computes in `compute` dtype - fp32 (any backend), fp64 (the reference
// backend: the double-precision oracle), or bf16/fp16 (mixed precision). params() are always
// the master weights in the accumulation dtype (fp64 for fp64, fp32 otherwise), grads() too.
// With a 16-bit compute dtype the kernels read a 16-bit copy of the weights, made by
// update_compute_weights() (which the owner of params() calls after changing them), and store
// activations in 16 bits; layernorm statistics, attention log-sum-exps and losses stay fp32.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/params.h"
#include "parallel/communicator.h"
#include "precision/fp8.h"

namespace meshlm {

// How update_compute_weights rounds the master weights into the 16-bit compute copy.
// Activation recomputation: none keeps every activation backward reads; selective keeps the
// matrix products' outputs and recomputes the attention core and GELU from them in backward;
// full keeps only each block's input and reruns the whole block's forward in its backward.
enum class Recompute { none, selective, full };
Recompute recompute_from_name(const std::string& name);  // throws on an unknown name
const char* recompute_name(Recompute r);

struct WeightRounding {
  bool stochastic = false;
  uint64_t seed = 0;
  int64_t step = 0;
};

class Gpt {
 public:
  // tp: the tensor-parallel group (null or size 1: the whole model on this rank). Then this
  // rank holds its part of every parameter (ParamTable's sharding plan): the attention heads
  // [r NH/tp, (r+1) NH/tp) and a 1/tp slice of the MLP's hidden units; embeddings, layernorms
  // and the LM head are replicated. Forward and backward call the tp collectives themselves
  // (all-reduce after the row-parallel products, and of the column-parallel products' input
  // gradients); every rank of the group must run them together.
  //
  // stage: the layers of one pipeline stage (default: the whole model). The stage forward
  // takes the previous stage's output (or tokens, on the first stage) and backward gives back
  // the gradient of that input (see forward_micro / backward_micro).
  Gpt(const ModelConfig& cfg, Backend& backend, DType compute = DType::fp32, Communicator* tp = nullptr,
      const StageLayers& stage = {});

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return be_; }  // owns every buffer of the model
  const ParamTable& table() const { return table_; }
  const StageLayers& stage() const { return stage_; }
  DType dtype() const { return dtype_; }           // the compute dtype
  DType master_dtype() const { return params_.dtype(); }
  Tensor& params() { return params_; }  // (P,) flat master weights, in table order
  Tensor& grads() { return grads_; }    // (P,) flat, same offsets, master dtype
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  void* param(const std::string& name);  // pointer to one master parameter inside params()

  // Initializes the master weights (and the compute copy).
  void init(uint64_t seed);
  void zero_grad();

  // Rewrites the 16-bit compute copy from the master weights (a no-op when compute is the
  // master dtype): round to nearest even, or stochastically with random bits that depend only
  // on (seed, parameter name, element index, step), so every parallel layout rounds the same.
  // [begin, end): only those elements of the flat buffer (end < 0: to the end); ZeRO-1 rounds
  // its own slice and all-gathers compute_weights().
  void update_compute_weights(const WeightRounding& r = {}, int64_t begin = 0, int64_t end = -1);
  // The 16-bit copy (P,) the kernels read; only meaningful when dtype() is 16-bit.
  Tensor& compute_weights() { return compute_; }
  // bf16 weights without fp32 masters: the master takes the (stochastically rounded) compute
  // copy's values, so the weights are exactly bf16 (the llm.c recipe).
  void master_from_compute_weights();

  // fp8 (compute dtype bf16): the inputs and weights of the four matrix products of every
  // block go through e4m3, their output gradients through e5m2, each with a per-tensor
  // delayed scale (precision/fp8.h). The embedding and the LM head stay bf16. The amaxes seen
  // during a step are recorded by end_fp8_step(), so forward and backward use the same scales.
  void enable_fp8(const Fp8ScalingConfig& cfg);
  bool fp8() const { return !fp8_.empty(); }
  void end_fp8_step();
  // The amaxes this step has seen so far (3 per site), to be max-reduced across data-parallel
  // ranks before end_fp8_step() so every rank derives the same scales.
  std::vector<float> fp8_step_amaxes() const;
  void set_fp8_step_amaxes(const std::vector<float>& a);
  nlohmann::json fp8_state() const;
  void set_fp8_state(const nlohmann::json& j);

  // Pipelining keeps several micro-batches in flight: `slots` independent sets of saved
  // activations (the backward scratch is shared). Slot k of forward_micro is consumed by
  // backward_micro(k). Default 1.
  void set_slots(int slots);
  int slots() const { return slots_; }
  void set_recompute(Recompute r);
  Recompute recompute() const { return recompute_; }

  // Forward of micro-batch `slot` through this stage. The first stage reads tokens (B, T); any
  // other reads `input`, the previous stage's output (Ns, C) in the compute dtype (Ns = B T, or
  // B T / tp with sequence parallelism). The last stage reads targets (B, T) and returns the
  // mean loss (else 0), with dloss_scale as in forward(); other stages leave their output in
  // output(slot).
  double forward_micro(int slot, const int32_t* tokens, const void* input, const int32_t* targets,
                       int64_t B, int64_t T, float dloss_scale);
  // Backward of micro-batch `slot`: the last stage starts from its loss, any other from
  // `doutput`, the gradient of output(slot) (Ns, C). A stage other than the first leaves the
  // gradient of its input in input_grad() (valid until the next backward). on_ready as backward().
  void backward_micro(int slot, const void* doutput, const std::function<void(int64_t offset)>& on_ready = {});
  const void* output(int slot) const;  // (Ns, C), compute dtype
  const void* input_grad() const;      // (Ns, C), compute dtype
  int64_t boundary_elems(int64_t B, int64_t T) const;  // Ns * C: what passes between stages

  // Forward over tokens (B, T). With targets (B, T) returns the mean cross-entropy over the
  // B*T positions (else 0). If dloss_scale != 0, the logits are replaced by the gradient of
  // dloss_scale * mean_loss, ready for backward(); use 1/accumulation_steps when accumulating.
  double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                 float dloss_scale = 0.0f);
  // Adds the gradient of the last forward's scaled loss into grads() (the += convention).
  // on_ready(offset), if given, is called as gradients become final: after it, the elements
  // [offset, P) of grads() will not change again in this backward. Backward finalizes the
  // flat buffer from its end (ln_f, then blocks L-1 ... 0, then wpe and wte, which the LM head
  // shares), so offset only decreases; the last call is on_ready(0). Data parallelism starts
  // reducing a gradient bucket as soon as it is final.
  void backward(const std::function<void(int64_t offset)>& on_ready = {});

  // Sequence parallelism (Megatron's): the layernorm/residual regions keep only this tp rank's
  // Ns = N / tp rows (activation memory / tp there); the input of each column-parallel region
  // is all-gathered over the group, the output of each row-parallel region reduce-scattered,
  // and the layernorms' gradients, partial over rows, summed. Needs tp > 1 and N % tp == 0.
  void enable_sequence_parallel();
  bool sequence_parallel() const { return sp_; }
  // Bytes of the activations this rank holds (compute dtype) and of its statistics: every
  // slot's saved activations plus the shared scratch (backward, recomputation).
  int64_t activation_bytes() const { return int64_t(acts_.nbytes() + stats_.nbytes()); }
  // Of those, the bytes one micro-batch keeps from its forward to its backward.
  int64_t saved_activation_bytes() const {
    return int64_t(saved_total_ * esz_ + saved_stats_total_ * master_esz_);
  }

  // Bytes of activations and activation gradients this rank has all-reduced over the tp group
  // (fp32 payload) since the last reset: per forward + backward, 4 per layer and 2 more
  // (embedding, LM head) of N x C, and 3 N-vectors of the vocabulary-parallel cross-entropy.
  int64_t tp_bytes() const { return tp_bytes_; }
  void reset_tp_bytes() { tp_bytes_ = 0; }

  // The model's tensors grouped for the numerics report: per layer ("embedding", "h.0", ...,
  // "final") and kind ("weights": master values, "activations": what the last forward saved,
  // in the compute dtype, "grads": parameter gradients as backward left them).
  struct TensorSpan {
    std::string layer, kind;
    DType dtype;
    const void* data;
    int64_t n;
  };
  std::vector<TensorSpan> tensor_spans() const;

  // Logits (Vp,) of position (b, t) of the last forward run without dloss_scale, as fp32,
  // first V entries meaningful.
  std::vector<float> logits_at(int64_t b, int64_t t) const;

 private:
  void ensure_activations(int64_t B, int64_t T);
  // Activations (compute dtype) and statistics (master dtype) by element offset: an offset
  // with kScratch set lies in the shared scratch after the slots, any other in the current
  // slot's saved region.
  static constexpr size_t kScratch = size_t(1) << 62;
  size_t physical(size_t offset, size_t saved_total) const {
    return offset & kScratch ? size_t(slots_) * saved_total + (offset & ~kScratch)
                             : size_t(slot_) * saved_total + offset;
  }
  void* act(size_t offset) { return static_cast<char*>(acts_.data()) + physical(offset, saved_total_) * esz_; }
  const void* act(size_t offset) const {
    return static_cast<const char*>(acts_.data()) + physical(offset, saved_total_) * esz_;
  }
  void* stat(size_t offset) {
    return static_cast<char*>(stats_.data()) + physical(offset, saved_stats_total_) * master_esz_;
  }
  const void* stat(size_t offset) const {
    return static_cast<const char*>(stats_.data()) + physical(offset, saved_stats_total_) * master_esz_;
  }
  // Block l (global index) forward from `residual` (Ns, C) into its activations; write_output:
  // also its output res3 (a recomputation in backward leaves the saved output alone).
  void block_forward(int64_t l, const void* residual, bool write_output);
  const void* weight(const std::string& name);  // the compute copy of one parameter
  void* grad(const std::string& name);
  // The matrix products of block l's site k (0 c_attn, 1 attn.c_proj, 2 c_fc, 3 mlp.c_proj),
  // through fp8 when enabled.
  void block_matmul_forward(int64_t l, int k, void* out, const void* inp, const std::string& w,
                            int64_t N, int64_t C, int64_t OC);
  float fp8_scale(const Fp8Scale& s, const uint16_t* x, int64_t n) const;
  void block_matmul_forward_local(int64_t l, int k, void* out, const void* inp, const std::string& w,
                                  const void* bias, int64_t N, int64_t C, int64_t OC);
  void block_matmul_backward_local(int64_t l, int k, void* dinp, const std::string& w, const void* dout,
                                   const void* inp, int64_t N, int64_t C, int64_t OC);
  void tp_all_reduce(void* buf, int64_t n);  // sum over the tp group, in fp32
  void seq_gather(void* full, const void* part, int64_t n);            // n: elements per rank
  void seq_reduce_scatter(void* part, const void* full, int64_t n);    // n: elements in full
  // Layernorm `prefix` ("transformer.h.0.ln_1.") backward over Ns rows, adding its weight and
  // bias gradients (summed over the tp group under sequence parallelism).
  void layernorm_backward(const std::string& prefix, void* dinp, const void* dout, const void* inp,
                          const void* mean, const void* rstd, int64_t Ns);
  int tp_size() const { return tp_ ? tp_->size() : 1; }
  void block_matmul_backward(int64_t l, int k, void* dinp, const std::string& w, const void* dout,
                             const void* inp, int64_t N, int64_t C, int64_t OC);

  ModelConfig cfg_;
  StageLayers stage_;  // n_layers resolved
  Backend& be_;
  DType dtype_;
  size_t esz_, master_esz_;
  ParamTable table_;
  Communicator* tp_ = nullptr;  // null: no tensor parallelism
  Tensor tp_scratch_;  // fp32 staging of 16-bit tensor-parallel reductions
  float* scratch_f32(int64_t n);  // tp_scratch_, at least n elements
  int64_t tp_bytes_ = 0;
  bool sp_ = false;
  Tensor sp_ln_grads_;  // (2C) a layernorm's partial weight and bias gradients
  Tensor params_, grads_;
  Tensor compute_;  // (P,) the 16-bit copy of params_ (unused when dtype_ is the master dtype)

  // Activations, laid out for the capacity (B_cap, T_cap); offsets in elements.
  int64_t B_cap_ = 0, T_cap_ = 0, B_ = 0, T_ = 0;
  int slots_ = 1, slot_ = 0;  // slots of saved activations; the one forward/backward is using
  size_t saved_total_ = 0, saved_stats_total_ = 0;  // elements of one slot
  Recompute recompute_ = Recompute::none;
  // fp8 state: per block and site, the scales of input, weight and output gradient, the
  // amaxes pending for end_fp8_step(), and scratch for the quantized operands (bf16).
  struct Fp8Site {
    Fp8Scale x{DType::fp8_e4m3}, w{DType::fp8_e4m3}, g{DType::fp8_e5m2};
    float x_amax = 0, w_amax = 0, g_amax = 0;
  };
  std::vector<Fp8Site> fp8_;  // (L * 4)
  Tensor fp8_a_, fp8_b_;      // quantized operands
  bool training_forward_ = false;
  Tensor acts_;   // compute dtype
  Tensor stats_;  // master dtype: layernorm mean/rstd, attention lse, losses
  // Per slot: the embedding's token ids (this tp rank's rows, -1 elsewhere) and whether the
  // forward computed a loss gradient for backward.
  std::vector<Buffer> tokens_;  // (B, T) int32 per slot
  Buffer targets_;              // (B, T) int32: the last forward's targets
  Tensor ce_rows_;              // (3, N) the vocabulary-parallel cross-entropy's row vectors
  Buffer ce_local_targets_;     // (N) int32
  std::vector<char> has_grad_;
  struct Offsets {
    // Vectors of per-layer offsets are indexed by the stage's local layer (l - first_layer).
    size_t encoded, lnf, lnf_full, lnf_mean, lnf_rstd, logits, losses, row_lse;
    size_t dres, dln, dbig, dbig2, dqkv, datty, full, full2;
    std::vector<size_t> ln1_full, ln2_full;
    std::vector<size_t> ln1, ln1_mean, ln1_rstd, qkv, atty, lse, attproj, res2, ln2, ln2_mean,
        ln2_rstd, fch, fch_gelu, fcproj, res3;
  } off_{};
};

}  // namespace meshlm
