// libFuzzer target: the token-shard reader. Any file must either open (and then every token
// read back) or be refused with meshlm::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/meshlm_fuzz_shard_" + std::to_string(::getpid()) + ".bin";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    meshlm::Shard s(path);
    (void)s.max_token();
    std::vector<int32_t> out(size_t(s.size()));
    s.read(0, s.size(), out.data());
  } catch (const meshlm::Error&) {
  }
  return 0;
}
