#include "train/eval.h"

#include "core/error.h"

namespace meshlm {

std::vector<int64_t> token_byte_lengths(const BpeTokenizer& tokenizer) {
  std::vector<int64_t> len(size_t(tokenizer.vocab_size()));
  for (int32_t id = 0; id < int32_t(len.size()); id++)
    len[size_t(id)] = tokenizer.is_special(id) ? 0 : int64_t(tokenizer.token_bytes(id).size());
  return len;
}

EvalResult evaluate(Model& model, const DataLoader& loader, int64_t batches, int64_t B, int64_t T,
                    const BpeTokenizer* tokenizer) {
  return evaluate([&](const int32_t* x, const int32_t* y, int64_t b, int64_t t) { return model.forward(x, y, b, t); },
                  loader, batches, B, T, tokenizer);
}

EvalResult evaluate(const ForwardFn& forward, const DataLoader& loader, int64_t batches, int64_t B, int64_t T,
                    const BpeTokenizer* tokenizer, const CutShort& cut_short) {
  const std::vector<int64_t> bytes_of = tokenizer ? token_byte_lengths(*tokenizer) : std::vector<int64_t>{};
  MESHLM_CHECK(loader.seq_len() == T, "evaluate: the loader's sequence length differs from T");
  std::vector<int32_t> x, y;
  double sum = 0;
  int64_t bytes = 0;
  int64_t done = 0;
  for (int64_t i = 0; i < batches && !(cut_short && cut_short()); i++, done++) {
    loader.read(i * B, B, x, y);  // batch i: sequences [i B, (i + 1) B) of the split, in order
    sum += forward(x.data(), y.data(), B, T);
    if (tokenizer)
      for (int32_t t : y) {
        MESHLM_CHECK(t < int32_t(bytes_of.size()), "evaluate: token id " + std::to_string(t) +
                                                       " is outside the tokenizer's vocabulary of " +
                                                       std::to_string(bytes_of.size()) + " (wrong --tokenizer?)");
        bytes += bytes_of[size_t(t)];
      }
  }
  EvalResult r;
  r.batches = done;
  if (done > 0) {
    r.loss = sum / double(done);
    if (tokenizer && bytes > 0) r.loss_per_byte = sum * double(B * T) / double(bytes);
  }
  return r;
}

std::optional<EvalResult> Evaluator::run(Model& model, PipelineExecutor* pipeline, Mesh& mesh,
                                         const CutShort& cut_short, bool every_dp_rank) const {
  if (mesh.dp_rank() != 0 && !every_dp_rank) return std::nullopt;
  // The evaluating ranks (one tp x pp slice, or every rank) run collectives per batch: they stop together.
  CutShort agreed = cut_short;
  if (cut_short && (mesh.tp().size() > 1 || mesh.pp().size() > 1 || every_dp_rank)) {
    agreed = [&mesh, &cut_short, every_dp_rank]() {
      double stop = cut_short() ? 1.0 : 0.0;
      mesh.tp().all_reduce(&stop, 1, DType::fp64, ReduceOp::max);
      mesh.pp().all_reduce(&stop, 1, DType::fp64, ReduceOp::max);
      if (every_dp_rank) mesh.dp().all_reduce(&stop, 1, DType::fp64, ReduceOp::max);
      return stop > 0;
    };
  }
  const ForwardFn forward = [&](const int32_t* x, const int32_t* y, int64_t b, int64_t t) {
    return pipeline ? pipeline->forward_only(x, y, b, t) : model.forward(x, y, b, t);
  };
  EvalResult v = evaluate(forward, val_, batches_, B_, T_, tokenizer_, agreed);
  if (!pipeline) return v;
  double both[2] = {v.loss, v.loss_per_byte};
  mesh.pp().all_reduce(both, 2, DType::fp64, ReduceOp::max);
  v.loss = both[0];
  v.loss_per_byte = both[1];
  return v;
}

}  // namespace meshlm
