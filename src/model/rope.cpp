#include "model/rope.h"

#include <cmath>

namespace meshlm {

std::vector<double> rope_inv_freq(const ModelConfig& cfg) {
  const int64_t HS = cfg.head_size(), half = HS / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) f[size_t(i)] = std::pow(cfg.rope_theta, -double(2 * i) / double(HS));
  if (cfg.rope_scaling != "llama3") return f;
  // Llama 3.1: wavelengths longer than original / low_freq_factor slowed by `factor`, shorter
  // than original / high_freq_factor kept, a linear blend in 1 / wavelength between.
  const double old_len = double(cfg.rope_original_max_position), lo = cfg.rope_low_freq_factor,
               hi = cfg.rope_high_freq_factor, factor = cfg.rope_factor;
  const double low_freq_wavelen = old_len / lo, high_freq_wavelen = old_len / hi;
  for (double& x : f) {
    const double wavelen = 2 * M_PI / x;
    if (wavelen > low_freq_wavelen) {
      x /= factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_len / wavelen - lo) / (hi - lo);
      x = (1 - smooth) * x / factor + smooth * x;
    }
  }
  return f;
}

std::vector<double> rope_table(const ModelConfig& cfg, int64_t T) {
  const std::vector<double> f = rope_inv_freq(cfg);
  const int64_t half = int64_t(f.size());
  std::vector<double> cs(size_t(T * half * 2));
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < half; i++) {
      const double a = double(t) * f[size_t(i)];
      cs[size_t((t * half + i) * 2)] = std::cos(a);
      cs[size_t((t * half + i) * 2 + 1)] = std::sin(a);
    }
  return cs;
}

}  // namespace meshlm
