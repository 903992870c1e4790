// Evaluation: the mean loss over the first N sequential batches of a split.
#pragma once
#include <cstdint>

#include "data/loader.h"
#include "model/gpt.h"

namespace meshlm {

// Resets `loader` to the split's start, runs `batches` forward passes, returns the mean loss
// (each batch weighted equally; every batch has the same B*T tokens).
double evaluate(Gpt& model, DataLoader& loader, int64_t batches, int64_t B, int64_t T);

}  // namespace meshlm
