// Distributed checkpoints ("parts"): every rank writes what it alone holds - its slices of the
// parameters and of their AdamW moments, as its layout shards them - into its own file, in
// parallel; no rank gathers the model. Loading reshards: any layout reads any other's parts.
//
//   part.<r>-of-<W>.safetensors   rank r's pieces: "<name>", "exp_avg/<name>", "exp_avg_sq/<name>",
//                                 each 1-D, the elements [lo, hi) of rank r's tensor <name>
//                                 (its ParamEntry under the saving plan); metadata: pp_rank,
//                                 tp_rank and the ranges, {"<name>": [lo, hi], ...}
//   trainer.json                  as for whole checkpoints, plus "checkpoint": {"format":
//                                 "parts", "parts": W}; its config holds the saving layout
//   COMPLETE                      written last, by rank 0, after every part is on disk, from the
//                                 sizes and SHA-256 sums each rank computed of its own part
//
// Who writes what: a ZeRO-1 rank its shard [begin, end) of its stage's flat buffers (masters
// and moments: no gather of the masters either); otherwise data-parallel rank 0. Of a tensor
// several tensor-parallel ranks hold (replicated, shared kv heads) the first (counted_here);
// of the tied embedding the first pipeline stage. The global index of every piece follows
// from the saving layout alone: trainer.json's config rebuilds its ParamTables
// (param_table(cfg, plan, pp, tp)), whose ParamEntry::for_each_run maps local elements to
// the whole tensor. All ranks write into one directory: a file system every rank sees (a
// cluster file system, or one host).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "optim/adamw.h"
#include "parallel/mesh.h"
#include "train/checkpoint.h"
#include "train/safetensors.h"

namespace meshlm {

// Every rank calls this together; `tied_copy`: this stage's wte is the tied copy of a pipeline's
// last stage (not written).
void save_checkpoint_parts(const std::string& dir, Mesh& mesh, Model& model, AdamW& opt, bool tied_copy,
                           const TrainerState& st, const nlohmann::json& config, const std::string& tokenizer_file);

bool is_parts_checkpoint(const nlohmann::json& trainer);

// A parts checkpoint read by a rank of any layout: its own elements of each tensor, from the pieces.
class PartsReader {
 public:
  PartsReader(const std::string& dir, const nlohmann::json& trainer);
  ~PartsReader();
  // Only what a loading rank stores: of its tensor `e` (its ParamEntry under the loading layout),
  // the elements at flat offsets [lo, hi) of "<prefix><name>" ("", "exp_avg/", "exp_avg_sq/")
  // into local[i - e.offset]; each part's file is read only where it holds those elements
  // (the pieces are memory-mapped: the other bytes are never touched).
  void read_local(const ParamEntry& e, int64_t lo, int64_t hi, const std::string& prefix, float* local) const;
  // Every element of every tensor of `whole` is covered exactly once (and its moments, if asked).
  void check(const ParamTable& whole, bool moments) const;

 private:
  struct Part;
  const ParamEntry& saved_entry(int pp_rank, int tp_rank, const std::string& name) const;
  std::string dir_;
  ModelConfig model_;
  Plan plan_;
  std::vector<std::unique_ptr<Part>> parts_;
  mutable std::map<std::pair<int, int>, ParamTable> tables_;  // (pp, tp) -> the saving rank's table
};

}  // namespace meshlm
