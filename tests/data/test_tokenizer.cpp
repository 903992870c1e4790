// The byte-level BPE tokenizers: GPT-2's, id for id against js-tiktoken's test vectors
// (tests/data/gpt2_test_vectors.json) and tiny-shakespeare's published token count; the
// round-trip property on random byte strings and random Unicode text; meshlm's own file format;
// Hugging Face's tokenizer.json both ways; Llama 3's pre-tokenization pattern.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/hf_tokenizer.h"
#include "data/pretokenize.h"
#include "support/fixtures.h"

using namespace meshlm;

namespace {

const std::string kRoot = MESHLM_SOURCE_DIR;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

BpeTokenizer& gpt2() {
  static BpeTokenizer t = BpeTokenizer::load_gpt2(kRoot + "/data/gpt2");
  return t;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

TEST(Gpt2Tokenizer, MatchesTiktokenTestVectors) {
  auto doc = nlohmann::json::parse(slurp(kRoot + "/tests/data/gpt2_test_vectors.json"));
  ASSERT_GE(doc["cases"].size(), 40u);
  for (const auto& c : doc["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(gpt2().encode(text), want) << "text: " << text.substr(0, 80);
    EXPECT_EQ(gpt2().decode(want), text);
  }
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().eot_id(), 50256);
  // Special-token names in ordinary text are text.
  EXPECT_NE(gpt2().encode("<|endoftext|>"), std::vector<int32_t>{50256});
}

TEST(Gpt2Tokenizer, TinyShakespeareIs338025Tokens) {
  EXPECT_EQ(gpt2().encode(slurp(kRoot + "/data/tinyshakespeare.txt")).size(), 338025u);
}

TEST(Gpt2Tokenizer, RoundTripsRandomBytesAndUnicode) {
  for (int i = 0; i < 300; i++) {
    std::string bytes;  // arbitrary, mostly invalid UTF-8
    const int n = int(random_u32(5, 1, i) % 64);
    for (int k = 0; k < n; k++) bytes += char(random_u32(5, 2, uint64_t(i) * 100 + k) & 0xFF);
    ASSERT_EQ(gpt2().decode(gpt2().encode(bytes)), bytes) << "case " << i;
    std::string text;  // valid UTF-8 over all planes (no surrogates), spaces and digits mixed in
    for (int k = 0; k < n; k++) {
      uint32_t r = random_u32(6, 3, uint64_t(i) * 100 + k), cp;
      switch (r % 5) {
        case 0: cp = 0x20 + r % 0x5F; break;           // ASCII
        case 1: cp = " \t\n\r0123456789"[r % 15]; break;
        case 2: cp = 0x80 + r % 0x780; break;            // 2-byte
        case 3: cp = 0x800 + r % 0xF800; break;          // 3-byte
        default: cp = 0x10000 + r % 0x100000; break;     // 4-byte
      }
      if (cp >= 0xD800 && cp < 0xE000) cp = 0x41;
      text += utf8(cp);
    }
    ASSERT_EQ(gpt2().decode(gpt2().encode(text)), text) << "case " << i;
  }
}

TEST(Gpt2Tokenizer, RejectsBadFiles) {
  auto d = test::fresh_dir("bad_gpt2");
  std::ofstream(d / "encoder.json") << "{\"a\": 0, oops}";
  std::ofstream(d / "vocab.bpe") << "#version: 0.2\n";
  try {
    BpeTokenizer::load_gpt2(d.string());
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.json: not valid JSON at byte"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpt2().decode({50257}), Error);
}

TEST(MeshlmBpe, FileRoundTripAndMerges) {
  // Merges: "t"+"h" -> 256, 256+"e" -> 257; then <|endoftext|> = 258.
  auto t = BpeTokenizer::from_merges({{'t', 'h'}, {256, 'e'}}, {"<|endoftext|>"});
  EXPECT_EQ(t.vocab_size(), 259);
  EXPECT_EQ(t.eot_id(), 258);
  EXPECT_EQ(t.encode("the"), (std::vector<int32_t>{257}));
  EXPECT_EQ(t.encode(" the"), (std::vector<int32_t>{' ', 257}));  // no merge makes " t"
  EXPECT_EQ(t.encode("thy"), (std::vector<int32_t>{256, 'y'}));
  auto d = test::fresh_dir("bpe_file");
  t.save_json((d / "tok.json").string());
  auto u = BpeTokenizer::load_json((d / "tok.json").string());
  EXPECT_EQ(u.encode("the thy"), t.encode("the thy"));
  EXPECT_EQ(u.eot_id(), 258);
  std::ofstream(d / "bad.json") << R"({"format": "meshlm-bpe", "version": 1, "pattern": "gpt2", "merges": [[300, 1]], "special_tokens": {}})";
  EXPECT_THROW(BpeTokenizer::load_json((d / "bad.json").string()), Error);
  std::ofstream(d / "trunc.json") << R"({"format": "meshlm-bpe", "vers)";
  try {
    BpeTokenizer::load_json((d / "trunc.json").string());
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trunc.json: not valid JSON at byte"), std::string::npos) << e.what();
  }
}

#include <chrono>

#include "data/bpe_train.h"

TEST(BpeTrain, MergesMostFrequentPairsDeterministically) {
  // Pieces: "aaab" x1 and " ab" x? : the pattern splits "ab ab ab" into "ab", " ab", " ab".
  BpeTrainOptions o;
  o.vocab_size = 256 + 2 + 1;  // two merges + <|endoftext|>
  auto t = train_bpe({"ab ab ab"}, o);
  // Pair counts: (a,b) x3, (' ',a) x2 -> first merge a+b = 256; then (' ', 256) x2 -> 257.
  EXPECT_EQ(t.token_bytes(256), "ab");
  EXPECT_EQ(t.token_bytes(257), " ab");
  EXPECT_EQ(t.eot_id(), 258);
  EXPECT_EQ(t.encode("ab ab"), (std::vector<int32_t>{256, 257}));
  // Ties: (x,y) and (y,z) both occur twice in "xyz xyz" pieces... pick the smaller ids first.
  BpeTrainOptions o2;
  o2.vocab_size = 256 + 1 + 1;
  auto u = train_bpe({"qr", "qr", "rs", "rs"}, o2);
  EXPECT_EQ(u.token_bytes(256), "qr");  // 'q' < 'r'
}

TEST(BpeTrain, ShakespeareVocabularyRoundTripsAndCompresses) {
  const std::string text = slurp(kRoot + "/data/tinyshakespeare.txt");
  BpeTrainOptions o;
  o.vocab_size = 1024;
  const auto t0 = std::chrono::steady_clock::now();
  auto t = train_bpe({text}, o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(t.vocab_size(), 1024);
  const auto ids = t.encode(text);
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 2);  // at least 2 bytes per token
  std::cout << "trained 1024 tokens in " << secs << " s; " << double(text.size()) / ids.size()
            << " bytes per token\n";
  // Same input, same vocabulary.
  auto again = train_bpe({text}, o);
  for (int32_t id = 256; id < 1024; id++) ASSERT_EQ(again.token_bytes(id), t.token_bytes(id));
}

// ---- Hugging Face tokenizer.json (data/hf_tokenizer.h) ----

// GPT-2's tokenizer.json built from the shipped encoder.json and vocab.bpe is GPT-2's
// published one: the same vocabulary (spelling and ids) and merges (vocab.bpe's lines, in
// order); read back it encodes every test vector as js-tiktoken does.
TEST(HfTokenizer, Gpt2TokenizerJsonIsGpt2sOwnAndRoundTrips) {
  const nlohmann::ordered_json j = hf_tokenizer_json(gpt2());
  const auto encoder = nlohmann::json::parse(slurp(kRoot + "/data/gpt2/encoder.json"));
  EXPECT_EQ(nlohmann::json(j["model"]["vocab"]), encoder);
  std::istringstream bpe(slurp(kRoot + "/data/gpt2/vocab.bpe"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(bpe, line);)
    if (!line.empty() && line.rfind("#version", 0) != 0) lines.push_back(line);
  EXPECT_EQ(j["model"]["merges"].get<std::vector<std::string>>(), lines);
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["added_tokens"][0]["id"], 50256);

  BpeTokenizer back = parse_hf_tokenizer(j.dump(), "gpt2 tokenizer.json");
  EXPECT_EQ(back.vocab_size(), 50257);
  EXPECT_EQ(back.eot_id(), 50256);
  auto doc = nlohmann::json::parse(slurp(kRoot + "/tests/data/gpt2_test_vectors.json"));
  for (const auto& c : doc["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(back.encode(text), c["ids"].get<std::vector<int32_t>>()) << "text: " << text.substr(0, 80);
  }
  // Through a file and load_tokenizer, told apart from meshlm's format by content.
  const std::string path = (meshlm::test::fresh_dir("hftok") / "tokenizer.json").string();
  std::ofstream(path) << j.dump();
  EXPECT_EQ(tokenizer_file_name(path), "tokenizer.json");
  EXPECT_EQ(load_tokenizer(path).encode("Hello, world!"), (std::vector<int32_t>{15496, 11, 995, 0}));
}

TEST(HfTokenizer, TrainedBpeAndBytesRoundTrip) {
  const std::string text = slurp(kRoot + "/data/tinyshakespeare.txt").substr(0, 20000);
  BpeTrainOptions opt;
  opt.vocab_size = 400;
  BpeTokenizer trained = train_bpe({text}, opt);
  BpeTokenizer back = parse_hf_tokenizer(hf_tokenizer_json(trained).dump(), "trained");
  EXPECT_EQ(back.encode(text), trained.encode(text));
  EXPECT_EQ(back.eot_id(), trained.eot_id());
  BpeTokenizer bytes = load_tokenizer("bytes");
  BpeTokenizer bytes_back = parse_hf_tokenizer(hf_tokenizer_json(bytes).dump(), "bytes");
  EXPECT_EQ(bytes_back.encode("ab\xff"), (std::vector<int32_t>{'a', 'b', 255}));
}

TEST(HfTokenizer, RefusesWhatMeshlmCannotExpress) {
  nlohmann::json j = hf_tokenizer_json(load_tokenizer("bytes"));
  auto refused = [](nlohmann::json doc, const std::string& want) {
    try {
      parse_hf_tokenizer(doc.dump(), "t.json");
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted; wanted an error with: " << want;
  };
  nlohmann::json wp = j;
  wp["model"]["type"] = "WordPiece";
  refused(wp, "not BPE");
  nlohmann::json norm = j;
  norm["normalizer"] = {{"type", "NFC"}};
  refused(norm, "normalizer");
  nlohmann::json fallback = j;
  fallback["model"]["byte_fallback"] = true;
  refused(fallback, "byte_fallback");
  nlohmann::json meta = j;
  meta["pre_tokenizer"] = {{"type", "Metaspace"}};
  refused(meta, "cannot express");
  refused(nlohmann::json::object({{"version", "1.0"}}), "no \"model\"");
}

// Llama 3's pre-tokenization, by its pattern (no offline reference tokenizer exists here):
// contractions case-insensitively, letters with one leading non-letter, digits in threes,
// punctuation taking its line breaks, white space as GPT-2's.
TEST(HfTokenizer, Llama3PatternSplitsAsItsRegexSays) {
  Pretokenizer pre("llama3");
  auto split = [&](const std::string& s) {
    std::vector<std::string_view> v;
    pre.split(s, v);
    return std::vector<std::string>(v.begin(), v.end());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("1234567"), (V{"123", "456", "7"}));       // GPT-2: one piece
  EXPECT_EQ(split("I'LL don't"), (V{"I", "'LL", " don", "'t"}));  // GPT-2: 'LL is not a contraction
  EXPECT_EQ(split("(hi)"), (V{"(hi", ")"}));               // a letter run takes one leading non-letter
  EXPECT_EQ(split("end.\n\nNext"), (V{"end", ".\n\n", "Next"}));
  EXPECT_EQ(split("a  \n b"), (V{"a", "  \n", " b"}));
  Pretokenizer gpt2_pre("gpt2");
  std::vector<std::string_view> g;
  gpt2_pre.split("1234567", g);
  EXPECT_EQ(g.size(), 1u);
  EXPECT_THROW(Pretokenizer("(unclosed"), Error);
  // A tokenizer.json with Llama 3's Split + ByteLevel reads as the llama3 pattern.
  nlohmann::ordered_json j = hf_tokenizer_json(load_tokenizer("bytes"));
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  BpeTokenizer t = parse_hf_tokenizer(j.dump(), "llama3-style");
  EXPECT_EQ(t.pattern(), "llama3");
  EXPECT_EQ(hf_tokenizer_json(t)["pre_tokenizer"], j["pre_tokenizer"]);
}
