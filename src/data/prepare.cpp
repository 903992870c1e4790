#include "data/prepare.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/shard.h"

namespace meshlm {

namespace fs = std::filesystem;

PrepareResult prepare_shards(const PrepareOptions& opt) {
  MESHLM_CHECK(opt.tokenizer == "bytes", "--tokenizer: '" + opt.tokenizer +
                                             "' is not available yet (only 'bytes')");
  MESHLM_CHECK(!opt.inputs.empty(), "--input: no input files given");
  MESHLM_CHECK(!opt.output.empty(), "--output: no output directory given");
  MESHLM_CHECK(opt.val_fraction >= 0 && opt.val_fraction < 1,
               "--val-fraction must be in [0, 1) (got " + std::to_string(opt.val_fraction) + ")");
  std::vector<int32_t> tokens;
  for (const auto& path : opt.inputs) {
    std::ifstream in(path, std::ios::binary);
    MESHLM_CHECK(in && fs::is_regular_file(path), path + ": cannot read input file");
    std::stringstream ss;
    ss << in.rdbuf();
    auto ids = ByteTokenizer::encode(ss.str());
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  MESHLM_CHECK(tokens.size() >= 2, "--input: the input holds fewer than 2 tokens");
  const int64_t n_val = int64_t(double(tokens.size()) * opt.val_fraction);
  const int64_t n_train = int64_t(tokens.size()) - n_val;
  fs::create_directories(opt.output);
  std::vector<int32_t> train(tokens.begin(), tokens.begin() + n_train);
  std::vector<int32_t> val(tokens.begin() + n_train, tokens.end());
  write_shard((fs::path(opt.output) / "train_000000.bin").string(), train, ByteTokenizer::kVocabSize);
  if (n_val > 0)
    write_shard((fs::path(opt.output) / "val_000000.bin").string(), val, ByteTokenizer::kVocabSize);
  nlohmann::json manifest = {{"tokenizer", opt.tokenizer},
                             {"vocab_size", ByteTokenizer::kVocabSize},
                             {"train_tokens", n_train},
                             {"val_tokens", n_val},
                             {"inputs", opt.inputs},
                             {"format", "llm.c shard, magic 20240520 version 1, uint16"}};
  std::ofstream(fs::path(opt.output) / "manifest.json") << manifest.dump(2) << "\n";
  return {n_train, n_val, ByteTokenizer::kVocabSize};
}

}  // namespace meshlm
