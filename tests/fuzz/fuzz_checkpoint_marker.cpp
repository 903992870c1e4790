// libFuzzer target: a checkpoint's COMPLETE and trainer.json readers. Any text must either
// parse into checked values or be refused with meshlm::Error (never a JSON-library exception,
// a crash or a sanitizer report). The first byte picks which reader.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/checkpoint_marker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1) {
      const meshlm::CheckpointMarker m = meshlm::parse_checkpoint_marker(text, "COMPLETE", 2);
      for (auto it = m.files.begin(); it != m.files.end(); ++it) {
        (void)(*it)["bytes"].get<uint64_t>();
        (void)(*it)[m.checksum_key()].get<std::string>();
      }
    } else {
      const nlohmann::json t = meshlm::parse_trainer_json(text, "trainer.json", 2);
      (void)t["step"].get<int64_t>();
      (void)t["loader"]["sequences"].get<int64_t>();
      (void)t["rng"]["seed"].get<uint64_t>();
    }
  } catch (const meshlm::Error&) {
  }
  return 0;
}
