// The parallel layout of a run as one validated value: the mesh shape, how each parameter is
// split across the tensor-parallel ranks (rules keyed by Hugging Face parameter-name patterns),
// sequence parallelism, activation recomputation, the pipeline split and schedule, and how
// gradients are synchronised across the data-parallel ranks. Layers read their shard spec from
// the plan; model code never branches on the layout. A model family supplies its sharding rules
// (model/gpt2.h); the trainer builds the plan from the run's config (train/config.h).
//
// Worked example (GPT-2, tp 2): "transformer.h.*.attn.c_attn.*" is columns in 3 groups (each of
// q, k, v split by heads: rank 1 holds heads [NH/2, NH) of each), "*.c_proj.weight" rows,
// "transformer.wte.weight" rows (the vocabulary: rank 1 holds rows [Vp/2, Vp)), and every other
// parameter (layernorms, the projections' biases, wpe) is replicated.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "parallel/mesh.h"
#include "parallel/pipeline.h"

namespace meshlm {

// How a parameter is split across tensor-parallel ranks: replicated (every rank holds it all),
// columns (the last dimension split; `groups` > 1 splits each of that many equal column groups
// separately, as c_attn's q | k | v), or rows (the first dimension split).
enum class Sharding { replicated, columns, rows };
const char* sharding_name(Sharding s);

// A parameter-name pattern (fnmatch: `*` matches any run of characters, dots included) and the
// split of the parameters it matches. The first matching rule wins; no match is replicated.
// `parts` < tp (a divisor of tp) splits the dimension into only that many parts, each held by
// tp / parts consecutive ranks (the key/value heads of grouped-query attention when tp exceeds
// their number: each kv head replicated on the ranks whose query heads read it).
struct ShardRule {
  std::string pattern;
  Sharding shard = Sharding::replicated;
  int64_t groups = 1;
  int parts = 0;  // 0: tp
};

// Activation recomputation: none keeps every activation backward reads; selective keeps the
// matrix products' outputs and recomputes the cheap element-wise parts (attention core, GELU)
// in backward; full keeps only each block's input and reruns the whole block's forward.
enum class Recompute { none, selective, full };
Recompute recompute_from_name(const std::string& name);  // throws on an unknown name
const char* recompute_name(Recompute r);

// How gradients meet across the data-parallel ranks (train/grad_sync.h implements each):
// none (dp 1), buckets (all-reduced in buckets during backward), zero1 (reduce-scattered; each
// rank steps its shard of the optimizer state and all-gathers the updated weights), zero2 (also
// the gradients and the fp32 masters kept as the shard: gradient windows reduce-scattered unit
// by unit as backward finishes them), zero3 (also the weights: each unit's gathered just before
// its forward and its backward, the next one prefetched, released after use).
enum class GradSyncKind { none, buckets, zero1, zero2, zero3 };
const char* grad_sync_name(GradSyncKind k);

// Consecutive layers [first, first + n) of the model.
struct LayerRange {
  int64_t first = 0, n = 0;
};

// The part of the model one pipeline rank holds: its model chunks in forward order, each a run of
// consecutive blocks (one chunk, or v with interleaved 1F1B: rank s holds virtual stages s,
// s + pp, ..., s + (v - 1) pp), the embeddings in front of the first chunk when `first`, the final
// norm and the LM head after the last when `last`. With a tied LM head the first and the last
// stage each hold a copy of the embedding and sum its gradient (docs/parallel.md). The default
// (no chunks) is the whole model.
struct StageLayers {
  std::vector<LayerRange> chunks;  // empty: every layer, one chunk
  bool first = true, last = true;
  // The chunks with the default spelled out: {[0, n_layer)}.
  std::vector<LayerRange> resolved(int64_t n_layer) const;
  // Every layer held, in forward order.
  std::vector<int64_t> layers(int64_t n_layer) const;
  // The chunk holding `layer` (0 for the default whole model; -1: not held here).
  int chunk_of(int64_t layer) const;
};

// Layers per pipeline stage: the explicit split `spec` ("3,3,2": one positive count per stage,
// summing to n_layer) or, when empty, an even split (n_layer a multiple of pp). Anything else
// throws naming the problem: layers are never silently dropped. With interleaving, `pp` here is
// the number of virtual stages (pp x v), the split's entries in virtual-stage order.
std::vector<int64_t> pipeline_split(int64_t n_layer, int pp, const std::string& spec = "");
// The split that makes the most expensive stage as cheap as possible, given the cost of one
// block and the extra cost of the last stage (the LM head): a dynamic program over the
// contiguous splits. (`--pp-layers balanced`; the costs come from the layers, model/model.h.)
std::vector<int64_t> balanced_pipeline_split(int64_t n_layer, int pp, double block_cost, double head_cost);
// Pipeline rank `stage` of the split into split.size() = pp x v virtual stages: virtual stages
// stage, stage + pp, ..., as its v chunks.
StageLayers stage_layers(const std::vector<int64_t>& split, int stage, int virtual_stages = 1);

// Which GEMM format each Linear runs in (the names of precision/gemm_formats.h; the plan only
// keeps them): rules "selector,selector: format" separated by ';', the first rule with a
// selector matching a Linear wins; a Linear no rule matches runs in the compute dtype.
// Selectors, so that one plan reads the same for every model family:
//   *              every Linear of the blocks (not the LM head)
//   layers.i       block i's Linears (i < 0 counts from the end: layers.-1 is the last block)
//   layers.i-j     blocks i to j, both included
//   attn, mlp      the attention (q, k, v, output) or the MLP Linears of every block
//   layers.i.attn  (or .mlp, or layers.i-j.attn) both at once
//   head           the LM head (quantized only where a rule names it)
// Example: "layers.0,layers.-1: bf16; *: mxfp4". Promotions made by the trainer's stability
// rules (train/stability.h) override the rules for their site; the plan's version counts them,
// and checkpoints keep them, so a resumed run continues with the formats it had.
struct PrecisionRule {
  std::vector<std::string> selectors;
  std::string format;
};
struct PrecisionPromotion {
  int64_t step = 0;    // the step after which it took effect
  int64_t site = 0;    // precision site (the Linears in model order, the LM head last)
  std::string format;  // the site's format from then on
  std::string reason;
};
struct PrecisionPlan {
  std::vector<PrecisionRule> rules;
  std::vector<PrecisionPromotion> promotions;
  // Parses the rule text (empty: no rules); throws a one-line error naming the bad rule.
  static PrecisionPlan parse(const std::string& text);
  // The format of a Linear of block `layer` (-1: the LM head) whose role is "attn" or "mlp",
  // before promotions; "" when no rule matches.
  std::string format_of(int64_t layer, const std::string& role, int64_t n_layer) const;
  int version() const { return int(promotions.size()); }
  bool empty() const { return rules.empty(); }
  std::string describe() const;  // the rules as text, normalised
};

struct Plan {
  MeshShape mesh;
  std::vector<ShardRule> sharding;  // used when mesh.tp > 1
  bool sequence_parallel = false;   // layernorm/residual regions split along the sequence (tp > 1)
  Recompute recompute = Recompute::none;
  std::vector<int64_t> pp_split;    // layers per virtual stage, pp x pp_virtual (empty: one stage)
  PipelineSchedule pp_schedule = PipelineSchedule::one_f_one_b;
  int pp_virtual = 1;               // model chunks per pipeline rank (interleaved 1F1B: >= 2)
  GradSyncKind grad_sync = GradSyncKind::none;
  double bucket_mb = 25;     // buckets: size in MB of fp32 gradients
  bool overlap = true;       // buckets: reduce during backward (else one reduction after it)
  DType grad_reduce = DType::fp32;  // the dtype gradients travel in (fp32 | bf16)
  int64_t fsdp_unit = 1;      // zero3: consecutive blocks gathered together
  // zero2/zero3 with several micro-batches: false reduce-scatters every micro-batch's gradient
  // windows (more traffic, only the shard held); true holds whole gradients until the last
  // micro-batch and reduce-scatters once (ZeRO-1's traffic, whole gradients' memory). A
  // pipeline holds them whole (its micro-batches' backwards interleave with forwards).
  bool hold_whole_grads = false;
  PrecisionPlan precision;  // GEMM formats per Linear (empty: every GEMM in the compute dtype)

  // The rule for a parameter (replicated when tp is 1 or no rule matches), with its groups.
  ShardRule shard_of(const std::string& name) const;
  StageLayers stage(int pp_rank) const;
  int zero_stage() const;  // 0 (none, buckets), 1, 2, 3
  // fp32 elements in bucket_mb: a gradient bucket, or a round of ZeRO's chunked reduce-scatter
  int64_t bucket_elems() const { return std::max<int64_t>(1, int64_t(bucket_mb * 1e6 / 4)); }
  // Throws a one-line error naming the inconsistency (sequence parallel without tp, a split
  // that does not match pp, ZeRO-1 without dp, ZeRO-3 with a pipeline, ...).
  void validate() const;
  std::string describe() const;  // "dp 2 x tp 2 x pp 1, zero1, sequence parallel, recompute none"
};

}  // namespace meshlm
