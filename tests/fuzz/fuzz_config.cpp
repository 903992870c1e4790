// libFuzzer target: the TOML config reader. Any text must either give (key, value) pairs of
// the right kinds or be refused with meshlm::Error (never a toml++ exception or a crash).
#include <cstdint>
#include <optional>
#include <string>

#include "core/error.h"
#include "train/config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto kind_of = [](const std::string& key) -> std::optional<meshlm::ConfigKind> {
    if (key == "n_layer" || key == "steps" || key == "batch_size") return meshlm::ConfigKind::integer;
    if (key == "lr" || key == "peak_gflops") return meshlm::ConfigKind::real;
    if (key == "precision" || key == "data") return meshlm::ConfigKind::text;
    return std::nullopt;
  };
  try {
    for (const auto& [k, v] : meshlm::read_config_text(text, "fuzz.toml", kind_of)) (void)(k.size() + v.size());
  } catch (const meshlm::Error&) {
  }
  return 0;
}
