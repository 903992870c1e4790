#include "train/eval.h"

namespace meshlm {

double evaluate(Gpt& model, DataLoader& loader, int64_t batches, int64_t B, int64_t T) {
  loader.reset();
  std::vector<int32_t> x, y;
  double sum = 0;
  for (int64_t i = 0; i < batches; i++) {
    loader.next(x, y);
    sum += model.forward(x.data(), y.data(), B, T);
  }
  return batches > 0 ? sum / double(batches) : 0.0;
}

}  // namespace meshlm
