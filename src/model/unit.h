// The units of a decoder stack, each a composition of layers (model/layer.h) that a model
// family provides (model/gpt2.h): the Embedding (token ids -> the residual stream), the Blocks
// (residual stream -> residual stream) and the Head (final norm, LM head, loss). The stack
// (model/model.h) runs them in order, calls the data-parallel hooks around each, and keeps the
// residual stream between them. Every unit works on this rank's part of the layout.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/layer.h"
#include "model/linear.h"

namespace meshlm {

class Unit {
 public:
  explicit Unit(std::string name) : name_(std::move(name)) {}
  virtual ~Unit() = default;
  // "embedding", "h.<l>", "final": the unit's name, its parameters' group in the numerics
  // report and in the hooks.
  const std::string& name() const { return name_; }
  virtual void declare(std::vector<ParamDecl>& out) const = 0;
  virtual void bind(const ParamTable& table) = 0;
  virtual void plan(ActivationPlanner& p, const Dims& d, bool sequence_parallel) = 0;
  virtual void cost(const CostContext& c, std::vector<Cost>& out) const = 0;
  // The Linears whose GEMMs a precision plan may transform (fp8: the blocks' four).
  virtual std::vector<Linear*> linears() { return {}; }
  // The activations it keeps from forward to backward, by name, for the numerics report.
  virtual void activations(std::vector<std::pair<std::string, Act>>& out) const {}

 private:
  std::string name_;
};

// Whether a unit's name is a block's ("h.<l>": every family's blocks are named so).
inline bool is_block_unit(const std::string& name) { return name.rfind("h.", 0) == 0; }

class EmbeddingUnit : public Unit {
 public:
  using Unit::Unit;
  // Token ids for `slots` micro-batches in flight of N tokens each (set when the stack lays
  // out its activations).
  virtual void set_token_slots(Backend& be, int slots, int64_t N) = 0;
  // tokens (B, T) on the host, checked against the vocabulary; out (Ns, C) the residual stream.
  virtual void forward(Ctx& c, const int32_t* tokens, void* out) = 0;
  // Adds the gradient of out (dout) into the parameters' gradients.
  virtual void backward(Ctx& c, const void* dout) = 0;
};

class BlockUnit : public Unit {
 public:
  using Unit::Unit;
  virtual Act output() const = 0;  // (Ns, C), kept always
  // x (Ns, C) -> output(); write_output false when full recomputation reruns it in backward.
  virtual void forward(Ctx& c, const void* x, bool write_output) = 0;
  // What selective recomputation rebuilds (the cheap parts the plan did not keep).
  virtual void recompute_selective(Ctx& c) = 0;
  // dres holds the gradient of output(); afterwards, of x (in place).
  virtual void backward(Ctx& c, const void* x, void* dres) = 0;
};

class HeadUnit : public Unit {
 public:
  using Unit::Unit;
  virtual Act logits() const = 0;  // (N, Vl): this rank's vocabulary columns
  // The mean loss over N positions of x (Ns, C) against targets (N, backend memory; null: no
  // loss, 0). dloss_scale != 0: the logits are replaced by the gradient of dloss_scale * the
  // mean loss, ready for backward.
  virtual double forward(Ctx& c, const void* x, const int32_t* targets, float dloss_scale) = 0;
  // dx (Ns, C) = the gradient of x (written, not added).
  virtual void backward(Ctx& c, const void* x, void* dx) = 0;
};

// The units of one pipeline stage of a model, as a family builds them (model/family.h).
struct DecoderUnits {
  std::unique_ptr<EmbeddingUnit> embedding;  // null: not this stage's
  std::vector<std::unique_ptr<BlockUnit>> blocks;
  std::unique_ptr<HeadUnit> head;            // null: not this stage's
};

}  // namespace meshlm
