// libFuzzer target: the safetensors reader (header JSON, offsets, dtypes). Any file must either
// open, and then every F32 tensor it lists read back, or be refused with meshlm::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/meshlm_fuzz_st_" + std::to_string(::getpid()) + ".safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    meshlm::SafeTensorsFile st(path);
    std::vector<float> buf;
    for (const auto& [name, e] : st.entries()) {
      if (e.dtype != "F32") continue;
      buf.resize(size_t(meshlm::shape_numel(e.shape)));
      st.read_f32(name, e.shape, buf.data());
    }
  } catch (const meshlm::Error&) {
  }
  return 0;
}
