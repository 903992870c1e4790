// The numerics report: where low-precision arithmetic loses information. Every N steps the
// trainer appends to <run>/numerics.jsonl, for each layer and tensor kind (weights,
// activations, grads), the largest magnitude and the fractions of values that are zero, that
// would underflow to zero, that would be subnormal, and that overflow, in the run's compute
// format (for fp32 values such as the master weights and the gradients: what rounding them to
// that format would do; gradients as backward produced them, i.e. times the loss scale), and
// the loss scale. `meshlm report` renders the file (render_numerics_report).
#pragma once
#include <cstdint>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/files.h"
#include "core/dtype.h"
#include "model/model.h"

namespace meshlm {

// TensorStats (backend/backend.h): the statistics of one tensor, measured by the backend's
// tensor_stats op, so the report never reads tensor memory itself.

// One line of the report: a layer's tensors of one kind.
struct NumericsEntry {
  std::string layer, kind;  // "h.3", "activations"
  TensorStats stats;        // n = 0: the model holds none (e.g. recomputed activations)
};
// The layers a model (or pipeline stage) reports, in model order: "embedding" (first stage),
// "h.<l>" for its blocks, "final" (last stage).
std::vector<std::string> numerics_layers(const StageLayers& stage, int64_t n_layer);
// Every (layer, kind) of the model in report order: numerics_layers(model.stage()) x
// (weights, activations, grads), measured against the model's compute format.
std::vector<NumericsEntry> collect_numerics(const Model& model);

// The numerics report of a pipeline: each stage's entries (numerics_layers x 3 kinds, 6
// numbers each) go to pipeline rank 0, which knows every stage's layers from the plan. Only
// the ranks at tp 0, dp 0 take part (the pp group of rank 0). Returns the whole model's
// entries on pipeline rank 0, nothing elsewhere.
std::vector<NumericsEntry> gather_numerics(const Model& stage, Communicator& pp, const Plan& plan);

class NumericsReport {
 public:
  // append: continue an existing file (a resumed run), dropping lines past `step`.
  NumericsReport(const std::string& path, bool append, int64_t step);
  void write(int64_t step, const Model& model, double loss_scale);
  // Entries from several pipeline stages, concatenated in stage order; empty ones are skipped.
  void write(int64_t step, const std::vector<NumericsEntry>& entries, DType format, double loss_scale);
  // An event of the stability rules (train/stability.h): a line with "step" and "event".
  void write_event(const nlohmann::json& e);

 private:
  static AppendFile make_file(const std::string& path, bool append, int64_t step);
  AppendFile out_;
};

// Reads numerics.jsonl and prints a table of the last step (and the worst fractions over the
// run); writes an SVG plot of amax and underflow per layer over the steps to svg_path.
void render_numerics_report(const std::string& jsonl_path, const std::string& svg_path,
                            std::ostream& out);

}  // namespace meshlm
