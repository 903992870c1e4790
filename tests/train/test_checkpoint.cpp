// Checkpoints: safetensors layout (checked by an independent parse), a write/read round trip
// that is bit-identical, and refusal of truncated, tampered or incomplete checkpoints.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "support/fixtures.h"
#include "train/checkpoint.h"
#include "train/safetensors.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

ModelConfig config() { return test::tiny_model(200); }  // V 200 pads to 256

using test::slurp;

struct Saved {
  fs::path dir;
  std::unique_ptr<Backend> be = make_cpu_backend();
  Model model{config(), *be};
  AdamW opt{*be, model.table(), DType::fp32, {}};
  explicit Saved(const std::string& name) : dir(test::fresh_dir(name) / "step_000003") {
    model.init(42);
    for (int64_t i = 0; i < opt.m().numel(); i++) {
      opt.m().as<float>()[i] = float(i % 17) * 1e-3f;
      opt.v().as<float>()[i] = float(i % 13) * 1e-5f;
    }
    TrainerState st;
    st.step = 3;
    st.loader = {96};
    save_checkpoint(dir.string(), model, &opt, st, {{"n_layer", 2}});
  }
};

}  // namespace

TEST(Checkpoint, SafetensorsLayoutIsHuggingFaces) {
  Saved s("ckpt_layout");
  const std::string bytes = slurp(s.dir / "model.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(header["transformer.wte.weight"]["shape"], nlohmann::json({200, 16}));  // unpadded
  EXPECT_EQ(header["transformer.h.1.mlp.c_fc.weight"]["shape"], nlohmann::json({16, 64}));
  EXPECT_EQ(header["transformer.h.0.attn.c_attn.weight"]["dtype"], "F32");
  EXPECT_FALSE(header.contains("lm_head.weight"));  // tied to wte, as Hugging Face saves gpt2
  // The bytes of one tensor are the model's values, little-endian fp32.
  auto off = header["transformer.ln_f.weight"]["data_offsets"];
  float first;
  std::memcpy(&first, bytes.data() + 8 + n + off[0].get<size_t>(), 4);
  EXPECT_EQ(first, 1.0f);
  EXPECT_EQ(bytes.size(), 8 + n + off[1].get<size_t>() + (bytes.size() - 8 - n - off[1].get<size_t>()));
}

TEST(Checkpoint, RoundTripIsBitIdentical) {
  Saved s("ckpt_roundtrip");
  auto be = make_cpu_backend();
  Model m(config(), *be);
  AdamW opt(*be, m.table(), DType::fp32, {});
  auto trainer = load_checkpoint(s.dir.string(), m, &opt);
  EXPECT_EQ(trainer["step"], 3);
  EXPECT_EQ(trainer["loader"]["sequences"], 96);
  EXPECT_EQ(0, std::memcmp(m.params().data(), s.model.params().data(), m.params().nbytes()));
  EXPECT_EQ(0, std::memcmp(opt.m().data(), s.opt.m().data(), opt.m().nbytes()));
  EXPECT_EQ(0, std::memcmp(opt.v().data(), s.opt.v().data(), opt.v().nbytes()));
  // Saving what was loaded reproduces the same files byte for byte.
  const fs::path again = s.dir.parent_path() / "again";
  save_checkpoint(again.string(), m, &opt, {3, {96}, 0, {0, 0}, {}, {}}, {{"n_layer", 2}});
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer.json", "COMPLETE"})
    EXPECT_EQ(slurp(s.dir / f), slurp(again / f)) << f;
  EXPECT_FALSE(fs::exists(again.string() + ".tmp"));
}

TEST(Checkpoint, RefusesTamperedTruncatedOrIncomplete) {
  Saved s("ckpt_bad");
  auto be = make_cpu_backend();
  Model m(config(), *be);
  auto expect_refusal = [&](const std::string& want) {
    try {
      load_checkpoint(s.dir.string(), m, nullptr);
      FAIL() << "accepted; expected: " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  // Tampered: one byte of one weight changed.
  std::string bytes = slurp(s.dir / "model.safetensors");
  std::string bad = bytes;
  bad[bad.size() - 5] ^= 0x01;
  std::ofstream(s.dir / "model.safetensors", std::ios::binary) << bad;
  expect_refusal("checksum mismatch");
  // Truncated.
  std::ofstream(s.dir / "model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  expect_refusal("truncated");
  // Restored: accepted again.
  std::ofstream(s.dir / "model.safetensors", std::ios::binary) << bytes;
  EXPECT_NO_THROW(load_checkpoint(s.dir.string(), m, nullptr));
  // Shape mismatch between the model asked for and the checkpoint.
  ModelConfig other = config();
  other.n_embd = 32;
  Model wide(other, *be);
  try {
    load_checkpoint(s.dir.string(), wide, nullptr);
    FAIL() << "shape mismatch accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.wte.weight"), std::string::npos) << e.what();
  }
  // Incomplete: the marker is missing (a save interrupted before its end).
  fs::remove(s.dir / "COMPLETE");
  expect_refusal("incomplete checkpoint");
  expect_refusal(s.dir.string());
}

TEST(Safetensors, RejectsCorruptHeaders) {
  auto d = test::fresh_dir("st_bad");
  std::ofstream(d / "a.safetensors", std::ios::binary) << std::string("\x10\0\0\0\0\0\0\0{not json}xxxxxx", 24);
  EXPECT_THROW(SafeTensorsFile((d / "a.safetensors").string()), Error);
  std::ofstream(d / "b.safetensors", std::ios::binary) << "abc";
  EXPECT_THROW(SafeTensorsFile((d / "b.safetensors").string()), Error);
}
