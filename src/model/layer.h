// The layer contract. A layer (model/linear.h, layernorm.h, attention.h, mlp.h, embedding.h,
// lm_head.h) declares its parameters (ParamDecl: names, unsharded shapes, initialisation),
// binds them to the table once it exists, plans its activations for a batch shape (what it
// keeps from forward to backward, and what a recompute setting rebuilds instead), runs an
// explicit forward and backward through the Backend inside a Ctx, and reports its cost as
// per-operation records (Cost). A model family composes layers into the three units of a
// decoder stack (Embedding, Block, Head: model/unit.h); the stack (model/model.h) runs them.
//
// Shape letters: B batch, T time, C channels, N = B T rows, Ns = the rows of the sequence
// regions (N, or N / tp under sequence parallelism), Cl = C / tp, NHl = NH / tp, V vocabulary,
// Vp padded, Vl = Vp / tp. THE += CONVENTION holds for layers as for kernels: backward adds
// into the input gradient it is given; whoever owns that buffer zeroes it first.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "model/kv_cache.h"
#include "model/params.h"
#include "parallel/collectives.h"
#include "plan/plan.h"

namespace meshlm {

struct Dims {
  int64_t B = 0, T = 0, N = 0, Ns = 0;
  int64_t pos0 = 0;  // the position of row 0 in its sequence: 0, except in a decode step
};

// ---- activations ----

// What a layer keeps from forward to backward, by recompute setting: always (block outputs,
// the head's logits), unless full recomputation reruns the block (the products' outputs,
// layernorms), or unless any recomputation rebuilds it (the cheap element-wise parts:
// attention core, GELU). What is not kept lives in scratch shared by every layer.
enum class Keep { always, unless_full, unless_recompute };
// Whether a buffer of that kind is kept per micro-batch under recompute setting r.
inline bool kept(Keep k, Recompute r) {
  return k == Keep::always || (k == Keep::unless_full && r != Recompute::full) ||
         (k == Keep::unless_recompute && r == Recompute::none);
}

// A buffer of the model's activation memory: an element offset in the compute-dtype
// activations or the master-dtype statistics (`stat`: layernorm mean/rstd, attention lse,
// losses), in the current micro-batch slot's saved region or in the shared scratch.
struct Act {
  size_t offset = 0;
  bool stat = false, scratch = false;
  int64_t n = 0;  // elements
};

// Lays out one micro-batch's activations, as layers ask: saved buffers go one after another
// (each 64-byte aligned), scratch buffers are shared by key (every layer asking for "dbig"
// gets the same one, so scratch is the largest single use, not the sum).
class ActivationPlanner {
 public:
  explicit ActivationPlanner(Recompute r) : recompute_(r) {}
  Recompute recompute() const { return recompute_; }
  // A buffer kept per `keep`; when recomputation rebuilds it instead, the scratch of `key`.
  Act keep(const std::string& key, int64_t n, Keep keep, bool stat = false);
  Act saved(int64_t n, bool stat = false) { return keep("", n, Keep::always, stat); }
  Act scratch(const std::string& key, int64_t n, bool stat = false);
  // Elements of each region (one slot's saved part; the scratch).
  size_t saved_elems(bool stat) const { return stat ? saved_stats_ : saved_; }
  size_t scratch_elems(bool stat) const { return stat ? scratch_stats_ : scratch_; }

 private:
  static size_t take(size_t& end, int64_t n);
  Recompute recompute_;
  size_t saved_ = 0, saved_stats_ = 0, scratch_ = 0, scratch_stats_ = 0;
  std::unordered_map<std::string, std::pair<Act, int64_t>> shared_;  // key -> (buffer, size)
};

// The activation memory of a model for one batch shape: `slots` saved regions (one per
// micro-batch in flight) then the shared scratch, for activations and for statistics.
class Activations {
 public:
  Activations() = default;
  Activations(const ActivationPlanner& plan, int slots, Backend& be, DType dt, DType stat_dt);
  // A layout for a smaller batch shape within the same memory (throws if it does not fit).
  void relayout(const ActivationPlanner& plan);
  void set_slot(int slot) { slot_ = slot; }
  int slot() const { return slot_; }
  void* at(Act a);
  const void* at(Act a) const { return const_cast<Activations*>(this)->at(a); }
  const void* at_slot(Act a, int slot) const;  // a saved buffer of another slot
  // Bytes of all of it, and of what one micro-batch keeps from forward to backward.
  int64_t bytes() const { return int64_t(acts_.nbytes() + stats_.nbytes()); }
  int64_t saved_bytes() const { return int64_t(saved_ * esz_ + saved_stats_ * stat_esz_); }

 private:
  Tensor acts_, stats_;
  size_t saved_ = 0, saved_stats_ = 0, esz_ = 0, stat_esz_ = 0;
  int slots_ = 0, slot_ = 0;
};

// ---- weights ----

// What of the flat buffers this rank stores (ZeRO-2 and ZeRO-3, train/zero_sync.h). By default
// every buffer is whole. A sharded buffer holds only the elements [begin, end) (this rank's
// data-parallel shard); a windowed one is what the layers read or accumulate into only through
// windows that the strategy maps as units need them (gathered weights, gradient buffers
// reduce-scattered as units finish), and a layer touching a parameter outside every window is
// an error naming it.
struct WeightResidency {
  int64_t begin = 0, end = -1;  // the shard (end < 0: the whole table)
  bool shard_masters = false;   // masters (and the 16-bit copy) stored as the shard only
  bool window_weights = false;  // ZeRO-3: the layers read gathered windows
  bool window_grads = false;    // ZeRO-2/3: gradients stored as the shard; layers write windows
};

// This rank's parameters: fp32 master weights (fp64 on the double-precision oracle) and
// gradients as flat buffers laid out by the table, and the 16-bit compute copy the kernels
// read when the compute dtype is bf16 or fp16 (else the masters themselves). Offsets are the
// table's (flat-buffer coordinates) whatever is stored.
class Weights {
 public:
  Weights(ParamTable table, Backend& be, DType compute, const WeightResidency& r = {});
  const ParamTable& table() const { return table_; }
  DType compute_dtype() const { return dt_; }
  DType master_dtype() const { return params_.dtype(); }
  const WeightResidency& residency() const { return res_; }
  Tensor& params() { return params_; }  // the stored masters: whole, or the shard
  Tensor& grads() { return grads_; }    // the stored gradients: whole, or the shard
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  Tensor& compute_copy() { return compute_; }  // only meaningful with a 16-bit compute dtype
  // The stored element at flat offset `off` of each buffer (inside the shard when sharded).
  void* master_at(int64_t off);
  void* grad_at(int64_t off);
  void* compute_at(int64_t off);  // the 16-bit copy (the masters when compute is the master dtype)
  int64_t master_begin() const { return res_.shard_masters ? res_.begin : 0; }
  int64_t master_end() const { return res_.shard_masters ? res_.end : table_.total(); }
  int64_t grad_begin() const { return res_.window_grads ? res_.begin : 0; }
  // Pointers into the buffers, by parameter (entry offset), as the layers see them.
  const void* weight(const ParamEntry& e) const;  // compute dtype
  void* grad(const ParamEntry& e);                 // master dtype
  void* param(const ParamEntry& e);                // master dtype (stored: whole or in the shard)
  const ParamEntry& entry(const std::string& name) const { return table_.at(name); }
  // Windows: the layers see flat elements [lo, hi) of the weights (compute dtype) or of the
  // gradients (master dtype) at `data` until unmapped.
  enum class View { weights, grads };
  void map(View v, int64_t lo, int64_t hi, void* data);
  void unmap(View v, int64_t lo);

 private:
  struct Window {
    int64_t lo, hi;
    void* data;
  };
  void* windowed(View v, const ParamEntry& e) const;
  void allocate();
  static void* at(Tensor& t, int64_t base, int64_t off, size_t esz, const char* what);
  ParamTable table_;
  Backend& be_;
  DType dt_;
  size_t esz_, master_esz_;
  WeightResidency res_;
  Tensor params_, grads_, compute_;
  std::vector<Window> windows_[2];  // by View, sorted by lo
};

// ---- the context of a forward or backward ----

struct Ctx {
  Backend& be;
  DType dt;            // compute dtype: activations, weights as read, activation gradients
  TpCollectives& tp;   // the tensor-parallel group's named collectives
  Weights& w;
  Activations& acts;
  Dims d;
  bool sequence_parallel = false;
  bool training = false;  // a training step's forward (fp8 records its amaxes)
  // Generation (Model::prefill, Model::decode): attention writes its keys and values to kv's
  // layer `layer` at positions pos0 .. pos0 + T - 1; a decode step (T = 1) reads them all, a
  // prefill (pos0 = 0) attends causally as in training. Null in training and evaluation.
  KvCache* kv = nullptr;
  int64_t layer = 0;
  void* at(Act a) { return acts.at(a); }
  size_t esz() const { return dtype_size(dt); }
  void zero(Act a, int64_t n) { be.zero(at(a), size_t(n) * esz()); }
};

// ---- cost ----

// One operation of a layer's forward or backward for a plan and batch shape: a GEMM (m x n x k
// products in dt), a memory-bound kernel (bytes read and written), a collective (bytes this
// rank contributes on a mesh axis), or the activation bytes kept from forward to backward.
struct Cost {
  enum class Kind { gemm, memory, collective, saved };
  Kind kind = Kind::gemm;
  std::string what;  // "transformer.h.0.attn.c_attn forward"
  bool backward = false;
  int64_t m = 0, n = 0, k = 0;
  DType dt = DType::fp32;
  int64_t bytes = 0;
  std::string collective, axis;  // "all_reduce" | "all_gather" | "reduce_scatter", "tp"
  // a Linear's product (matmul_forward / matmul_backward): its rows, in and out features and
  // weight layout (the planner times these kernels as a whole; 0 for other GEMMs)
  int64_t rows = 0, in = 0, out = 0;
  bool out_in = false;
  double flops() const { return kind == Kind::gemm ? 2.0 * double(m) * double(n) * double(k) : 0.0; }
};

// What a cost is computed for: the batch shape and this rank's share of the layout.
struct CostContext {
  Dims d;
  DType dt = DType::fp32, stat_dt = DType::fp32;
  int tp = 1;
  bool sequence_parallel = false;
  Recompute recompute = Recompute::none;
  // A record of `bytes` kept from forward to backward, when `k` keeps it.
  void saved(std::vector<Cost>& out, const std::string& what, Keep k, int64_t bytes) const {
    if (kept(k, recompute)) out.push_back({Cost::Kind::saved, what, false, 0, 0, 0, dt, bytes, "", ""});
  }
  // A memory-bound kernel's record: `bytes` read and written.
  void memory(std::vector<Cost>& out, const std::string& what, bool backward, int64_t bytes) const {
    out.push_back({Cost::Kind::memory, what, backward, 0, 0, 0, dt, bytes, "", ""});
  }
};

// ---- precision transforms of a GEMM ----

// What a Linear's GEMM operands pass through before the product (the fp8 simulation,
// precision/fp8.h; the block-scaled formats later). The pointers given are replaced by those
// of the (quantized) operands to use; they stay valid until the next call.
// The products of one Linear: out (N, OC) = x (N, C) @ W, W stored per `layout`.
struct GemmShape {
  int64_t N = 0, C = 0, OC = 0;
  WeightLayout layout = WeightLayout::in_out;
};
class GemmQuantizer {
 public:
  virtual ~GemmQuantizer() = default;
  // forward: x (N, C) and w replaced by what the product reads; `training`: a training step's.
  virtual void forward(Backend& be, const GemmShape& g, const void*& x, const void*& w, bool training) = 0;
  // The operands backward's products read: dinp += dout_d @ w_d^T, dweight += x_w^T @ dout_w
  // (block scales run along each product's own reduction axis, so the output gradient and x
  // may be quantized differently for each).
  struct Backward {
    const void *dout_d, *w_d, *dout_w, *x_w;
  };
  virtual Backward backward(Backend& be, const GemmShape& g, const void* dout, const void* x, const void* w) = 0;

  // A quantizer whose products are real low-precision GEMMs (fp8 codes on fp8 tensor cores)
  // runs them itself: the Linear then calls these instead of forward/backward and its own
  // products. out = x @ w + bias (out and bias in the compute dtype); dinp += dout @ w^T and
  // dweight += the weight gradient in w's layout (fp32), either may be null (ops.inc's
  // matmul_forward and matmul_backward, less the bias gradient, which the Linear takes from
  // the unquantized output gradient).
  virtual bool runs_products() const { return false; }
  virtual void forward_product(Backend&, const GemmShape&, void* /*out*/, const void* /*x*/, const void* /*w*/,
                               const void* /*bias*/, bool /*training*/) {}
  virtual void backward_products(Backend&, const GemmShape&, void* /*dinp*/, void* /*dweight*/,
                                 const void* /*dout*/, const void* /*x*/, const void* /*w*/) {}
};

}  // namespace meshlm
