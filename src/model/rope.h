// The rotary position embedding's angles (Llama): for head size HS, position t and pair i <
// HS/2 the angle t * inv_freq_i with inv_freq_i = theta^(-2i / HS) (Hugging Face's
// rotate_half layout pairs channel i with i + HS/2), optionally rescaled as Llama 3.1 does.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace meshlm {

// inv_freq (HS/2) of the config, after its rope_scaling (none | llama3), in double.
std::vector<double> rope_inv_freq(const ModelConfig& cfg);
// (T, HS/2, 2): cos and sin of every angle for positions [0, T), computed in double.
std::vector<double> rope_table(const ModelConfig& cfg, int64_t T);

}  // namespace meshlm
