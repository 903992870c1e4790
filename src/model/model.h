// Model: one pipeline stage of a decoder stack, built from a model family's units
// (model/family.h) and the plan. It owns this rank's weights (fp32 masters, gradients, the
// 16-bit compute copy), the activations of the micro-batches in flight and the residual stream
// between the units, and runs forward and backward through the Backend. The layout comes from
// the plan (sharding rules, sequence parallelism, recompute, the stage's layers); the model
// never branches on it: the layers read their shard specs and call the named collectives.
//
// Precision: compute in fp32 (any backend), fp64 (the reference backend: the double-precision
// oracle), or bf16/fp16 (mixed precision: the kernels read a 16-bit copy of the weights made by
// update_compute_weights(), and store activations in 16 bits; layernorm statistics, attention
// log-sum-exps and losses stay in the master dtype). Transforms of the GEMMs (fp8) are
// installed on the Linears by the precision part (precision/fp8.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/unit.h"
#include "model/layer.h"
#include "parallel/collectives.h"
#include "parallel/communicator.h"
#include "plan/plan.h"

namespace meshlm {

// How update_compute_weights rounds the master weights into the 16-bit compute copy.
struct WeightRounding {
  bool stochastic = false;
  uint64_t seed = 0;
  int64_t step = 0;
  // The optimizer already wrote the rounded copy (AdamW's fused refresh, RoundedCopy): nothing
  // left to round, only what the data-parallel strategy exchanges.
  bool done_by_optimizer = false;
};

// What the stack tells the data-parallel gradient synchronisation (train/grad_sync.h) as it
// runs, unit by unit: before a unit's forward and backward (where fully sharded weights will
// be gathered), and after a unit's backward, from which offset of the flat gradient buffer
// everything is final. Backward finalizes the buffer from its end (the head, then blocks
// L-1 ... 0, then the embedding), so the offsets only decrease; the last call is 0.
struct UnitRef {
  const std::string& name;
  int64_t first_offset;  // its parameters' lowest offset in the flat buffers (tied ones aside)
};
class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  virtual void before_forward(const UnitRef&) {}
  virtual void before_backward(const UnitRef&) {}
  virtual void grads_final_from(int64_t offset) {}
};

// The cost of one micro-batch of (B, T) through each unit of stage `pp_rank` of the plan, for
// tensor-parallel rank 0, without building a model (no memory: the units and the parameter
// table only). What a layout planner and `--pp-layers balanced` sum.
struct UnitCost {
  std::string unit;  // "embedding", "h.0", ..., "final"
  std::vector<Cost> ops;
  double forward_flops() const;
};
std::vector<UnitCost> unit_costs(const ModelConfig& cfg, const Plan& plan, int pp_rank, DType dt, int64_t B,
                                 int64_t T);

// The activation memory stage `pp_rank` of the plan lays out for micro-batches of (B, T) in dt
// (tensor-parallel rank 0), without building a model: what one slot keeps from forward to
// backward and the scratch all slots share, in bytes. Model::activation_bytes() is
// slots x saved + scratch.
struct ActivationLayoutBytes {
  int64_t saved = 0, scratch = 0;
};
ActivationLayoutBytes activation_layout(const ModelConfig& cfg, const Plan& plan, int pp_rank, DType dt, int64_t B,
                                        int64_t T);

// The parameter table of stage `pp_rank` of the plan on tensor-parallel rank tp_rank (no
// weights allocated).
ParamTable param_table(const ModelConfig& cfg, const Plan& plan, int pp_rank, int tp_rank);

class Model {
 public:
  // tp: the tensor-parallel group (null: one rank); its size must be the plan's tp. pp_rank:
  // which stage of the plan's pipeline split this is (the whole model without a split).
  // residency: what of the weight buffers this rank stores (ZeRO-2/3 shard them; layer.h).
  Model(const ModelConfig& cfg, Backend& backend, DType compute = DType::fp32, const Plan& plan = {},
        Communicator* tp = nullptr, int pp_rank = 0, const WeightResidency& residency = {});
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const Plan& plan() const { return plan_; }
  const StageLayers& stage() const { return stage_; }
  Backend& backend() const { return be_; }
  const ParamTable& table() const { return w_.table(); }
  DType dtype() const { return dt_; }                        // the compute dtype
  DType master_dtype() const { return w_.master_dtype(); }
  Tensor& params() { return w_.params(); }  // (P,) flat master weights, in table order (or the shard)
  Tensor& grads() { return w_.grads(); }    // (P,) flat, same offsets, master dtype (or the shard)
  const Tensor& params() const { return w_.params(); }
  const Tensor& grads() const { return w_.grads(); }
  Tensor& compute_weights() { return w_.compute_copy(); }  // (P,) the 16-bit copy the kernels read
  void* param(const std::string& name) { return w_.param(w_.entry(name)); }
  Weights& weights() { return w_; }
  const WeightResidency& residency() const { return w_.residency(); }
  // The stored element at flat offset `off` (whole buffers, or inside the shard).
  float* master_at(int64_t off) { return static_cast<float*>(w_.master_at(off)); }
  float* grad_at(int64_t off) { return static_cast<float*>(w_.grad_at(off)); }
  void* compute_at(int64_t off) { return w_.compute_at(off); }  // the 16-bit copy's element `off`
  // A parameter's masters from / to host memory (e.numel() fp32, this tp rank's part): the
  // elements this rank stores (all, or those inside its shard); the rest of `local` untouched.
  void set_master(const ParamEntry& e, const float* local);
  void get_master(const ParamEntry& e, float* local);
  // The units in forward order with the flat range of their own parameters (a tied parameter,
  // [0, tied_elems()), aside): what ZeRO-3 gathers unit by unit.
  struct UnitSpan {
    std::string name;
    int64_t lo = 0, hi = 0;
  };
  std::vector<UnitSpan> unit_spans() const;

  // Initializes the master weights (and the compute copy) by global element index.
  void init(uint64_t seed);
  void zero_grad();
  // Rewrites the 16-bit compute copy from the master weights (a no-op when compute is the
  // master dtype): round to nearest even, or stochastically with random bits that depend only
  // on (seed, parameter name, element index, step), so every layout rounds the same. [begin,
  // end): only those elements (end < 0: to the end); ZeRO-1 rounds its own slice.
  void update_compute_weights(const WeightRounding& r = {}, int64_t begin = 0, int64_t end = -1);
  // bf16 weights without fp32 masters: the masters take the compute copy's values.
  void master_from_compute_weights();

  // Elements of the parameter the first and last pipeline stages share (the tied embedding /
  // LM head, [0, tied_elems()) of the flat buffers) held by this stage; 0 when the family's head
  // is untied or this stage holds neither end.
  int64_t tied_elems() const;

  // The Linears of the blocks (in forward order), whose GEMMs a precision transform may take,
  // and the LM head's (null when this stage does not hold it).
  std::vector<Linear*> block_linears();
  Linear* head_linear();

  // Micro-batches in flight (pipelining): `slots` sets of saved activations (scratch shared).
  void set_slots(int slots);
  int slots() const { return slots_; }
  Recompute recompute() const { return plan_.recompute; }
  bool sequence_parallel() const { return plan_.sequence_parallel; }
  void set_hooks(UnitHooks* hooks) { hooks_ = hooks; }
  // Hooks called around every unit of every forward and backward, before set_hooks' (ZeRO-3
  // gathers its weights there; ZeRO-2/3 open and reduce gradient windows).
  void set_residency_hooks(UnitHooks* hooks) { residency_hooks_ = hooks; }

  // The stage's model chunks (model/plan.h: one, or v with interleaved 1F1B), each run on its own:
  // chunk c's forward reads the previous virtual stage's output and feeds the next.
  int chunks() const { return int(chunk_end_.size()); }

  // Forward of micro-batch `slot` through chunk `chunk` of this stage. The model's first chunk
  // (the first stage's chunk 0) reads tokens (B, T) on the host; any other reads `input`, the
  // previous virtual stage's output (Ns, C) in the compute dtype. The model's last chunk (the
  // last stage's last chunk) reads targets (B, T, host) and returns the mean loss (else 0); with
  // dloss_scale != 0 the logits are replaced by the gradient of dloss_scale * mean loss, ready
  // for backward (use 1/accumulation_steps when accumulating). Other chunks leave their output
  // in output(chunk, slot).
  double forward_micro(int chunk, int slot, const int32_t* tokens, const void* input, const int32_t* targets,
                       int64_t B, int64_t T, float dloss_scale);
  // Backward of micro-batch `slot` through chunk `chunk` (the += convention on the gradients):
  // the model's last chunk starts from its loss, any other from `doutput`, the gradient of
  // output(chunk, slot). A chunk other than the model's first leaves the gradient of its input in
  // input_grad() (valid until the next backward).
  void backward_micro(int chunk, int slot, const void* doutput);
  const void* output(int chunk, int slot) const;  // (Ns, C), compute dtype
  const void* input_grad() const;                 // (Ns, C), compute dtype
  int64_t boundary_elems(int64_t B, int64_t T) const;  // Ns * C: what passes between stages

  // The whole model on one stage: forward (slot 0) and backward.
  double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, float dloss_scale = 0.0f);
  void backward() { backward_micro(0, 0, nullptr); }

  // Bytes of activations (every slot's saved part plus the shared scratch), and what one
  // micro-batch keeps from its forward to its backward.
  int64_t activation_bytes() const { return acts_.bytes(); }
  int64_t saved_activation_bytes() const { return acts_.saved_bytes(); }
  // Tensor-parallel payload since the last reset (TpCollectives::bytes).
  int64_t tp_bytes() const { return tp_.bytes(); }
  void reset_tp_bytes() { tp_.reset_bytes(); }

  // The cost of one micro-batch of (B, T) through this stage, per operation (model/layer.h).
  std::vector<Cost> cost(int64_t B, int64_t T) const;

  // The model's tensors grouped for the numerics report: per unit ("embedding", "h.0", ...,
  // "final") and kind ("weights": master values, "activations": what the last forward kept, in
  // the compute dtype, "grads": parameter gradients as backward left them).
  struct TensorSpan {
    std::string layer, kind, name;
    DType dtype;
    const void* data;
    int64_t n;
  };
  std::vector<TensorSpan> tensor_spans() const;

  // Logits (Vp,) of position (b, t) of the last forward run without dloss_scale, as fp32,
  // first V entries meaningful (one rank: the logits are split across tensor-parallel ranks).
  std::vector<float> logits_at(int64_t b, int64_t t) const;

  // Generation with a KV cache (a whole model on one rank): an empty cache for this model, and
  // one step that feeds `token` at position cache.length(), appends its keys and values, and
  // returns the logits (Vp) of the next token. Each step is one row through every layer.
  KvCache make_kv_cache();
  std::vector<float> decode(int32_t token, KvCache& cache);
  // The first T tokens of a sequence in one forward (the prompt), filling an empty cache;
  // returns the logits after the last of them.
  std::vector<float> prefill(const int32_t* tokens, int64_t T, KvCache& cache);

 private:
  void ensure_activations(int64_t B, int64_t T);
  std::vector<float> generate_step(const int32_t* tokens, int64_t T, KvCache& cache);
  Ctx ctx(bool training);
  Dims dims(int64_t B, int64_t T) const;
  std::vector<Unit*> units() const;
  int64_t first_offset(const Unit& u) const;  // its parameters' lowest offset, tied ones aside
  void check_targets(const int32_t* targets, int64_t N) const;

  ModelConfig cfg_;
  Plan plan_;
  StageLayers stage_;
  Backend& be_;
  DType dt_;
  TpCollectives tp_;
  DecoderUnits units_;
  Weights w_;
  Activations acts_;
  Dims d_;                                // of the last forward
  int64_t B_cap_ = 0, T_cap_ = 0;         // the activations' capacity
  int slots_ = 1;
  std::vector<size_t> chunk_end_;  // per chunk: one past its last block in units_.blocks
  std::vector<Act> x0_;  // per chunk: its input (Ns, C) per slot
  Act dres_;             // the residual stream's gradient (Ns, C)
  Buffer targets_;    // (B, T) int32 of the last forward with targets
  std::vector<char> has_grad_;  // per (chunk, slot): whether its forward left a loss gradient
  size_t chunk_begin(int chunk) const { return chunk > 0 ? chunk_end_[size_t(chunk - 1)] : 0; }
  bool model_first(int chunk) const { return chunk == 0 && units_.embedding; }
  bool model_last(int chunk) const { return chunk == chunks() - 1 && units_.head; }
  UnitHooks* hooks_ = nullptr;
  UnitHooks* residency_hooks_ = nullptr;
  void before_forward(const Unit& u);
  void before_backward(const Unit& u);
  void grads_final_from(int64_t offset);
};

}  // namespace meshlm
