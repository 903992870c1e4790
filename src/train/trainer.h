// The trainer, as parts: a Trainer is built from the config and its plan (the model of this
// rank's stage, the pipeline executor, the data-parallel GradSync, the optimizer, the loss
// scaler and fp8 recipe, the Checkpointer, the Evaluator, the RunLog) and runs
// train() -> train_step() -> forward_backward(): micro-batches with gradient accumulation (or
// the pipeline's schedule), the gradient synchronisation, global-norm clipping, AdamW with the
// LR schedule, periodic evaluation and checkpoints, metrics on stdout and in metrics.jsonl.
// Ctrl-C finishes the current step, writes a checkpoint and returns (nothing is lost).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/mesh.h"
#include "train/config.h"

namespace meshlm {

struct TrainResult {
  int64_t steps = 0;           // optimizer steps completed in total
  double last_loss = 0;        // train loss of the last step
  double val_loss = -1;        // last evaluation, nats per token; -1 if none ran
  double val_loss_per_byte = -1;
  std::string checkpoint;      // the last checkpoint written
  double tokens_per_s = 0;     // mean over this run's steps
  bool interrupted = false;
  double peak_rss_mib = 0;     // of the whole process, at the end of the run
  double peak_gflops = 0;      // the MFU denominator used
  std::string peak_how;        // where it came from: given, measured, cached
  std::map<std::string, double> kernel_ms;  // --profile 1: ms per step per kernel (after the first step)
  bool fp8_simulated = false;  // the speed figures are not fp8 hardware's (bf16 products, or widened codes)
  bool fp8_real_gemms = false;  // fp8's products ran on one-byte codes (fp8_gemm), not bf16 read-backs
  bool quantization_simulated = false;  // fp8 or a GEMM format of the ladder: the same
  int64_t skipped_steps = 0;   // fp16 overflows in this run (optimizer steps skipped)
  int64_t instability_steps = 0;  // steps with findings of the stability rules (train/stability.h)
  int64_t promotions = 0;      // GEMM sites promoted up the ladder (in total, resumed runs included)
  // The GEMMs' bits per forward operand (x and W averaged, block scales counted), averaged
  // over the model's GEMM FLOPs, and the share of those FLOPs at 4.5 bits or fewer.
  double gemm_bits = 32, low_bit_flops_share = 0;
  double activation_mib = 0;   // rank 0's activation memory: every slot's saved part + scratch
  double saved_activation_mib = 0;  // of which one micro-batch keeps from forward to backward
  // rank 0's buffers: masters, the 16-bit copy, gradients, Adam moments, activations and ZeRO's
  // windows (what the planner's memory formula predicts, train/memory_estimate.h)
  double held_mib = 0;
  std::vector<double> pp_idle;      // pipeline: each stage's mean idle fraction (steps after the first)
  double pp_idle_predicted = 0;     // (pp - 1) / (m + pp - 1)
};

class Trainer {
 public:
  // Every rank of the job builds one with the same arguments (`mesh` must match the config's
  // dp x tp x pp); with resume_dir, the state of that checkpoint (any layout's).
  Trainer(const TrainConfig& cfg, Mesh& mesh, std::ostream& out, const std::string& resume_dir, bool overwrite);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  TrainResult train();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Trains per `cfg`; with `resume_dir` non-empty, continues from that checkpoint (weights,
// optimizer, step, data position) bit-identically, appending to <out>/metrics.jsonl (lines past
// the resumed step, left by an abandoned run, are dropped). A fresh run refuses a run
// directory that already holds a run unless `overwrite` (which removes its metrics and
// checkpoints). Human-readable lines go to `out`.
//
// With a mesh (dp > 1: every rank of the job calls train with the same arguments), each
// data-parallel rank reads its part of every global batch, gradients are summed across ranks
// (overlapped with backward, or ZeRO-1's reduce-scatter), and every rank takes the same step;
// rank 0 alone prints, writes metrics and checkpoints. Without one: a single rank.
TrainResult train(const TrainConfig& cfg, const std::string& resume_dir, std::ostream& out,
                  bool overwrite = false, Mesh* mesh = nullptr);

// The config stored in a checkpoint (its trainer.json), after verifying the checkpoint.
TrainConfig checkpoint_config(const std::string& dir);
// The same from trainer.json as verify_checkpoint(dir) returned it (the files are not read again).
TrainConfig checkpoint_config(const nlohmann::json& trainer, const std::string& dir);

}  // namespace meshlm
