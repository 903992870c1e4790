// Evaluation: the mean loss over the first N sequential batches of a split, in nats per token
// and in nats per byte of text (so models with different tokenizers can be compared).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "data/bpe.h"
#include "data/loader.h"
#include "model/model.h"
#include "parallel/mesh.h"
#include "train/pipeline_executor.h"

namespace meshlm {

struct EvalResult {
  double loss = 0;           // nats per token, mean over the batches
  double loss_per_byte = -1; // total nats / total bytes of the target tokens' text; -1: unknown
  int64_t batches = 0;       // the batches it ran: fewer than asked when cut short
};

// Asked before each batch: true ends the evaluation there (a second stop signal).
using CutShort = std::function<bool()>;

// Runs `batches` forward passes of (B, T) over the split's first batches * B sequences, in
// order (give an unshuffled loader). Special tokens (<|endoftext|>) count as 0 bytes. Without a
// tokenizer (data of unknown origin) the per-byte loss stays -1.
EvalResult evaluate(Model& model, const DataLoader& loader, int64_t batches, int64_t B, int64_t T,
                    const BpeTokenizer* tokenizer);
// The same with any forward (tokens, targets, B, T) -> mean loss, e.g. through a pipeline.
using ForwardFn = std::function<double(const int32_t*, const int32_t*, int64_t, int64_t)>;
EvalResult evaluate(const ForwardFn& forward, const DataLoader& loader, int64_t batches, int64_t B, int64_t T,
                    const BpeTokenizer* tokenizer, const CutShort& cut_short = nullptr);

// The trainer's periodic evaluation: the first `batches` micro-batches of (B, T) of the val
// split, through the model or the pipeline. One tensor-parallel group evaluates (dp rank 0:
// its forward has tp collectives); the other data-parallel ranks go on. Through a pipeline
// the last stage's loss (the others report 0) goes to every stage.
class Evaluator {
 public:
  Evaluator(const DataLoader& val, int64_t batches, int64_t B, int64_t T, const BpeTokenizer* tokenizer)
      : val_(val), batches_(batches), B_(B), T_(T), tokenizer_(tokenizer) {}
  // Every rank calls it; the result is meaningful on dp rank 0 (nullopt elsewhere). With
  // cut_short, the ranks that evaluate agree before each batch whether to stop there.
  // every_dp_rank: each data-parallel rank runs the batches too (ZeRO-3 gathers weights from all).
  std::optional<EvalResult> run(Model& model, PipelineExecutor* pipeline, Mesh& mesh,
                                const CutShort& cut_short = nullptr, bool every_dp_rank = false) const;
  int64_t batches() const { return batches_; }

 private:
  const DataLoader& val_;
  int64_t batches_, B_, T_;
  const BpeTokenizer* tokenizer_;
};

// Bytes of text per token id (0 for special tokens), for loss_per_byte.
std::vector<int64_t> token_byte_lengths(const BpeTokenizer& tokenizer);

}  // namespace meshlm
