// Token shards (llm.c format), the byte tokenizer, prepare, and the sequential loader.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/bpe.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/shard.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("meshlm_test_data_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

}  // namespace

TEST(Shard, WritesLlmcHeaderAndReadsBack) {
  auto d = temp_dir("shard");
  std::vector<int32_t> toks = {0, 1, 65535, 42};
  write_shard((d / "x_train.bin").string(), toks, 65536);
  // The header, read independently: 256 int32, magic 20240520, version 1, count.
  std::ifstream in(d / "x_train.bin", std::ios::binary);
  int32_t header[256];
  in.read(reinterpret_cast<char*>(header), sizeof header);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 4);
  uint16_t body[4];
  in.read(reinterpret_cast<char*>(body), sizeof body);
  EXPECT_EQ(body[2], 65535);
  EXPECT_EQ(fs::file_size(d / "x_train.bin"), 1024u + 8u);
  Shard s((d / "x_train.bin").string());
  EXPECT_EQ(s.size(), 4);
  EXPECT_EQ(s.token(2), 65535);
  EXPECT_EQ(s.max_token(), 65535);
  // Over 65536 ids: the uint32 variant.
  write_shard((d / "wide_train.bin").string(), {70000, 3}, 100000);
  Shard w((d / "wide_train.bin").string());
  EXPECT_EQ(w.token(0), 70000);
}

TEST(Shard, RejectsBadFilesWithTheFileName) {
  auto d = temp_dir("bad");
  write_bytes(d / "short.bin", "abc");
  write_bytes(d / "magic.bin", std::string(1024, '\0'));
  write_shard((d / "trunc.bin").string(), {1, 2, 3, 4}, 256);
  fs::resize_file(d / "trunc.bin", 1024 + 5);
  for (const char* name : {"short.bin", "magic.bin", "trunc.bin", "missing.bin"}) {
    try {
      Shard s((d / name).string());
      FAIL() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST(BytesTokenizer, IdIsTheByteAndRoundTripsAnyBytes) {
  auto t = load_tokenizer("bytes");
  EXPECT_EQ(t.vocab_size(), 256);
  EXPECT_EQ(t.eot_id(), -1);
  std::string s;
  for (int i = 0; i < 256; i++) s += char(i);
  s += "  \n\nword 123 \xff\xfe";
  const auto ids = t.encode(s);
  ASSERT_EQ(ids.size(), s.size());
  for (size_t i = 0; i < s.size(); i++) ASSERT_EQ(ids[i], static_cast<unsigned char>(s[i]));
  EXPECT_EQ(t.decode(ids), s);
  EXPECT_THROW(t.decode({300}), Error);
}

TEST(Prepare, SplitsTrainAndVal) {
  auto d = temp_dir("prepare");
  std::string text;
  for (int i = 0; i < 300; i++) text += "aaaa\n";
  for (int i = 0; i < 100; i++) text += "bbbb\n";  // the val split starts at the first safe cut
                                                     // at or after byte 1500, here exactly 1500
  write_bytes(d / "in.txt", text);
  PrepareOptions o;
  o.inputs = {(d / "in.txt").string()};
  o.output = (d / "out").string();
  o.val_fraction = 0.25;
  auto r = prepare_shards(o);
  EXPECT_EQ(r.train_tokens, 1500);
  EXPECT_EQ(r.val_tokens, 500);
  Shard val((d / "out" / "val_000000.bin").string());
  EXPECT_EQ(val.token(0), 'b');  // the val split is the end of the text; bytes has no EOT
  EXPECT_TRUE(fs::exists(d / "out" / "manifest.json"));
  o.inputs = {(d / "nope.txt").string()};
  EXPECT_THROW(prepare_shards(o), Error);
}

TEST(Loader, SequentialWindowsAreLlmcBatches) {
  auto d = temp_dir("loader");
  std::vector<int32_t> toks(100), more(31);
  for (int i = 0; i < 100; i++) toks[i] = i;
  for (int i = 0; i < 31; i++) more[i] = 200 + i;
  write_shard((d / "a_train.bin").string(), toks, 256);
  write_shard((d / "b_train.bin").string(), more, 256);
  DataLoader l(d.string(), "train", 10, 256);  // windows of 11 tokens every 10
  EXPECT_EQ(l.windows_per_epoch(), 9 + 3);       // (100 - 1) / 10 + (31 - 1) / 10
  std::vector<int32_t> x, y;
  l.read(0, 2, x, y);  // a batch of 2 = tokens [0, 21): llm.c's layout
  for (int i = 0; i < 20; i++) {
    EXPECT_EQ(x[i], i);
    EXPECT_EQ(y[i], i + 1);
  }
  l.read(9, 1, x, y);  // the first window of the second shard
  EXPECT_EQ(x[0], 200);
  l.read(12, 1, x, y);  // epoch 2 starts over
  EXPECT_EQ(x[0], 0);
  EXPECT_THROW(DataLoader(d.string(), "train", 10, 50), Error);   // ids >= vocab
  EXPECT_THROW(DataLoader(d.string(), "val", 10, 256), Error);    // no val shards
  EXPECT_THROW(DataLoader(d.string(), "train", 200, 256), Error); // no shard holds T + 1
}

TEST(Loader, ShuffledEpochsVisitEveryWindowOnce) {
  for (uint64_t n : {1ull, 2ull, 7ull, 1000ull, 4097ull}) {
    Permutation p(n, 42);
    std::vector<int> seen(n, 0);
    for (uint64_t i = 0; i < n; i++) seen[p(i)]++;
    for (uint64_t i = 0; i < n; i++) ASSERT_EQ(seen[i], 1) << "n " << n << " index " << i;
  }
  auto d = temp_dir("loader_shuffle");
  std::vector<int32_t> toks(1001);
  for (int i = 0; i < 1001; i++) toks[i] = i % 250;
  write_shard((d / "x_train.bin").string(), toks, 256);
  DataLoader a(d.string(), "train", 10, 256, true, 7), b(d.string(), "train", 10, 256, true, 8);
  std::vector<int> hits(100, 0);
  bool differs_from_order = false, epochs_differ = false, seeds_differ = false;
  for (int64_t n = 0; n < 100; n++) {
    hits[a.window_of(n)]++;
    differs_from_order |= a.window_of(n) != n;
    epochs_differ |= a.window_of(n) != a.window_of(n + 100);
    seeds_differ |= a.window_of(n) != b.window_of(n);
  }
  for (int w = 0; w < 100; w++) EXPECT_EQ(hits[w], 1) << "window " << w;  // none repeated or skipped
  EXPECT_TRUE(differs_from_order && epochs_differ && seeds_differ);
}

// The acceptance test of the resumable distributed loader: k steps at dp = 1, then a resume at
// dp = 2 and at dp = 4 (ranks simulated in one process) read exactly the sequences the
// uninterrupted dp = 1 run reads, each exactly once.
TEST(Loader, ResumeAtAnotherDataParallelSizeReadsTheSameStream) {
  auto d = temp_dir("loader_dp");
  std::vector<int32_t> toks(5001);
  for (int i = 0; i < 5001; i++) toks[i] = (i * 7) % 256;
  write_shard((d / "x_train.bin").string(), toks, 256);
  const DataLoader l(d.string(), "train", 8, 256, true, 3);  // 625 windows per epoch
  const int64_t Bg = 8, steps = 200, k = 37;                  // 200 steps cross 2 epochs
  // The uninterrupted run: dp 1, accumulation 2, micro-batch 4.
  std::vector<int64_t> want;
  BatchPlan one{1, 0, 2, 4};
  for (int64_t s = 0; s < steps; s++)
    for (int64_t a = 0; a < one.accum; a++)
      for (int64_t j = 0; j < one.micro; j++) want.push_back(l.window_of(one.first(s * Bg, a) + j));
  for (int64_t dp : {2, 4}) {
    std::vector<int64_t> got(want.begin(), want.begin() + k * Bg);  // the first k steps at dp 1
    LoaderState st{k * Bg};                                         // ... then saved and resumed
    for (int64_t s = k; s < steps; s++, st.sequences += Bg) {
      std::vector<int64_t> step(size_t(Bg), -1);
      for (int64_t r = 0; r < dp; r++) {
        BatchPlan p{dp, r, 1, Bg / dp};  // each rank: one micro-batch of Bg / dp
        for (int64_t j = 0; j < p.micro; j++) {
          const int64_t seq = p.first(st.sequences, 0) + j;
          ASSERT_EQ(step[size_t(seq - st.sequences)], -1) << "sequence read twice";
          step[size_t(seq - st.sequences)] = l.window_of(seq);
        }
      }
      got.insert(got.end(), step.begin(), step.end());
    }
    EXPECT_EQ(got, want) << "dp " << dp;
  }
}

namespace {
std::vector<int32_t> all_tokens(const fs::path& dir) {
  std::vector<int32_t> out;
  for (const char* split : {"train", "val"})
    for (const auto& path : list_shards(dir.string(), split)) {
      Shard s(path);
      for (int64_t i = 0; i < s.size(); i++) out.push_back(s.token(i));
    }
  return out;
}
}  // namespace

// Streaming in small chunks (cut only where pre-tokenization cannot reach across), several
// documents from a directory, several shards: the tokens are exactly [eot] + encode(doc) per
// document, in name order.
TEST(Prepare, ChunkedStreamingEqualsWholeDocumentEncoding) {
  auto d = temp_dir("prepare_gpt2");
  std::ifstream in(std::string(MESHLM_SOURCE_DIR) + "/data/tinyshakespeare.txt", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  fs::create_directories(d / "docs");
  const std::string doc_a = text.substr(0, 200000), doc_b = text.substr(200000, 100000) + "\n\n  tail";
  write_bytes(d / "docs" / "a.txt", doc_a);
  write_bytes(d / "docs" / "b.txt", doc_b);
  PrepareOptions o;
  o.tokenizer = "gpt2";
  o.inputs = {(d / "docs").string()};
  o.output = (d / "out").string();
  o.val_fraction = 0.2;
  o.shard_tokens = 10000;
  o.chunk_bytes = 3000;
  auto r = prepare_shards(o);
  EXPECT_EQ(r.documents, 2);
  EXPECT_GT(r.shards.size(), 5u);
  auto tok = load_tokenizer("gpt2");
  std::vector<int32_t> want = {tok.eot_id()};
  for (int32_t id : tok.encode(doc_a)) want.push_back(id);
  want.push_back(tok.eot_id());
  for (int32_t id : tok.encode(doc_b)) want.push_back(id);
  EXPECT_EQ(all_tokens(d / "out"), want);
  EXPECT_EQ(r.train_tokens + r.val_tokens, int64_t(want.size()));
  EXPECT_NEAR(double(r.val_tokens) / double(want.size()), 0.2, 0.02);
}

TEST(Prepare, RejectsBadInput) {
  auto d = temp_dir("prepare_bad");
  PrepareOptions o;
  o.output = (d / "out").string();
  o.inputs = {(d / "missing.txt").string()};
  EXPECT_THROW(prepare_shards(o), Error);
  write_bytes(d / "empty.txt", "");
  o.inputs = {(d / "empty.txt").string()};
  EXPECT_THROW(prepare_shards(o), Error);
  write_bytes(d / "x.txt", "hello\nworld\n");
  o.inputs = {(d / "x.txt").string()};
  o.tokenizer = (d / "nope.json").string();
  EXPECT_THROW(prepare_shards(o), Error);
}
