#include "data/bpe.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/hf_tokenizer.h"

namespace meshlm {

using nlohmann::json;

namespace {

constexpr size_t kMaxTokenBytes = 1024;  // GPT-2's longest token is 128 bytes

json parse_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MESHLM_CHECK(in, path + ": cannot open tokenizer file");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON at byte " + std::to_string(e.byte));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace

BpeTokenizer::BpeTokenizer(const std::string& pattern)
    : pattern_(pattern), pre_(std::make_unique<Pretokenizer>(pattern)) {}

void BpeTokenizer::index() {
  ranks_.clear();
  ranks_.reserve(tokens_.size());
  for (int32_t id = 0; id < first_special_; id++) {
    auto [it, fresh] = ranks_.emplace(tokens_[size_t(id)], id);
    MESHLM_CHECK(fresh, name_ + ": token " + std::to_string(id) + " repeats the bytes of token " +
                            std::to_string(it->second));
  }
  for (int32_t b = 0; b < 256; b++)
    MESHLM_CHECK(ranks_.count(std::string(1, char(b))), name_ + ": no token for byte " + std::to_string(b));
}

BpeTokenizer BpeTokenizer::load_gpt2(const std::string& dir) {
  const std::string enc_path = dir + "/encoder.json", bpe_path = dir + "/vocab.bpe";
  json enc = parse_json_file(enc_path);
  MESHLM_CHECK(enc.is_object() && !enc.empty(), enc_path + ": expected an object of token -> id");
  BpeTokenizer t;
  t.name_ = "gpt2";
  t.tokens_.assign(enc.size(), std::string());
  std::vector<bool> seen(enc.size(), false);
  const auto byte_of = gpt2_byte_of_codepoint();
  std::string bytes;
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    MESHLM_CHECK(it->is_number_integer(), enc_path + ": id of '" + it.key() + "' is not an integer");
    const int64_t id = it->get<int64_t>();
    MESHLM_CHECK(id >= 0 && id < int64_t(enc.size()) && !seen[size_t(id)],
                 enc_path + ": ids are not a permutation of 0.." + std::to_string(enc.size() - 1));
    seen[size_t(id)] = true;
    if (it.key() == "<|endoftext|>") {
      t.eot_ = int32_t(id);
      t.tokens_[size_t(id)] = it.key();
      continue;
    }
    MESHLM_CHECK(gpt2_unspell(it.key(), byte_of, bytes),
                 enc_path + ": token '" + it.key() + "' is not in GPT-2's byte alphabet");
    t.tokens_[size_t(id)] = bytes;
  }
  // GPT-2 puts its one special token last; every other id is mergeable.
  MESHLM_CHECK(t.eot_ == int32_t(enc.size()) - 1, enc_path + ": <|endoftext|> must be the last id");
  t.first_special_ = t.eot_;
  t.specials_ = {"<|endoftext|>"};
  // vocab.bpe holds the merges in rank order; with ids as ranks they are implied by
  // encoder.json, so the file is only checked to belong to it.
  std::ifstream bpe(bpe_path);
  MESHLM_CHECK(bpe, bpe_path + ": cannot open");
  std::string line;
  int64_t merges = 0, lineno = 0;
  while (std::getline(bpe, line)) {
    lineno++;
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    MESHLM_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size(),
                 bpe_path + ":" + std::to_string(lineno) + ": expected 'left right'");
    auto merged = enc.find(line.substr(0, sp) + line.substr(sp + 1));
    auto left = enc.find(line.substr(0, sp)), right = enc.find(line.substr(sp + 1));
    MESHLM_CHECK(merged != enc.end() && merged->get<int64_t>() == 256 + merges && left != enc.end() &&
                     right != enc.end(),
                 bpe_path + ":" + std::to_string(lineno) + ": merge does not match encoder.json");
    t.merges_.emplace_back(left->get<int32_t>(), right->get<int32_t>());
    merges++;
  }
  MESHLM_CHECK(merges == int64_t(enc.size()) - 257,
               bpe_path + ": " + std::to_string(merges) + " merges for " + std::to_string(enc.size()) + " tokens");
  t.index();
  return t;
}

BpeTokenizer BpeTokenizer::from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges,
                                       const std::vector<std::string>& specials) {
  BpeTokenizer t;
  t.name_ = "meshlm-bpe";
  for (int b = 0; b < 256; b++) t.tokens_.push_back(std::string(1, char(b)));
  for (const auto& [a, b] : merges) {
    const int32_t n = int32_t(t.tokens_.size());
    MESHLM_CHECK(a >= 0 && b >= 0 && a < n && b < n,
                 "merge " + std::to_string(n - 256) + " refers to a token not yet made");
    MESHLM_CHECK(t.tokens_[size_t(a)].size() + t.tokens_[size_t(b)].size() <= kMaxTokenBytes,
                 "merge " + std::to_string(n - 256) + " makes a token longer than " +
                     std::to_string(kMaxTokenBytes) + " bytes");
    t.tokens_.push_back(t.tokens_[size_t(a)] + t.tokens_[size_t(b)]);
  }
  t.merges_ = merges;
  t.first_special_ = int32_t(t.tokens_.size());
  for (const auto& s : specials) {
    if (s == "<|endoftext|>") t.eot_ = int32_t(t.tokens_.size());
    t.tokens_.push_back(s);
  }
  t.specials_ = specials;
  t.index();
  return t;
}

BpeTokenizer BpeTokenizer::from_vocab(const std::string& name, std::vector<std::string> tokens,
                                      std::vector<std::pair<int32_t, int32_t>> merges, int32_t n_specials,
                                      const std::string& pattern) {
  BpeTokenizer t(pattern);
  t.name_ = name;
  const int32_t n = int32_t(tokens.size());
  MESHLM_CHECK(n_specials >= 0 && n_specials <= n - 256, name + ": fewer than 256 mergeable tokens");
  t.first_special_ = n - n_specials;
  for (int32_t id = t.first_special_; id < n; id++) {
    t.specials_.push_back(tokens[size_t(id)]);
    if (tokens[size_t(id)] == "<|endoftext|>" || tokens[size_t(id)] == "<|end_of_text|>") t.eot_ = id;
  }
  t.tokens_ = std::move(tokens);
  t.index();
  // BPE here merges by the rank of the merged token (its id); a file's merge order must agree.
  int32_t last = -1;
  for (size_t i = 0; i < merges.size(); i++) {
    const auto [a, b] = merges[i];
    MESHLM_CHECK(a >= 0 && b >= 0 && a < t.first_special_ && b < t.first_special_,
                 name + ": merge " + std::to_string(i) + " names a token outside the vocabulary");
    auto it = t.ranks_.find(t.tokens_[size_t(a)] + t.tokens_[size_t(b)]);
    MESHLM_CHECK(it != t.ranks_.end(), name + ": merge " + std::to_string(i) + " makes no token of the vocabulary");
    MESHLM_CHECK(it->second > last, name + ": merge " + std::to_string(i) +
                                        " makes a lower id than the merge before it; meshlm's BPE ranks tokens by id");
    last = it->second;
  }
  t.merges_ = std::move(merges);
  return t;
}

BpeTokenizer from_merges_bytes() {
  BpeTokenizer t = BpeTokenizer::from_merges({}, {});
  t.name_ = "bytes";
  return t;
}

BpeTokenizer BpeTokenizer::load_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MESHLM_CHECK(in, path + ": cannot open tokenizer file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_json(ss.str(), path);
}

BpeTokenizer BpeTokenizer::parse_json(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON at byte " + std::to_string(e.byte));
  } catch (const json::exception& e) {  // e.g. a number out of range
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
  auto text_is = [&](const char* key, const char* want) {
    return j.contains(key) && j[key].is_string() && j[key].get<std::string>() == want;
  };
  MESHLM_CHECK(j.is_object() && text_is("format", "meshlm-bpe"),
               path + ": not a meshlm tokenizer file (\"format\": \"meshlm-bpe\" missing)");
  MESHLM_CHECK(j.contains("version") && j["version"].is_number_integer() && j["version"].get<int64_t>() == 1,
               path + ": unsupported tokenizer file version");
  MESHLM_CHECK(text_is("pattern", "gpt2") || text_is("pattern", "llama3"),
               path + ": unsupported pre-tokenization pattern (gpt2 or llama3)");
  const std::string pattern = j["pattern"].get<std::string>();
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<std::string> specials;
  try {
    for (const auto& m : j.at("merges")) merges.emplace_back(m.at(0).get<int32_t>(), m.at(1).get<int32_t>());
    std::vector<std::pair<int64_t, std::string>> sp;
    for (auto it = j.at("special_tokens").begin(); it != j.at("special_tokens").end(); ++it)
      sp.emplace_back(it->get<int64_t>(), it.key());
    std::sort(sp.begin(), sp.end());
    for (size_t i = 0; i < sp.size(); i++) {
      MESHLM_CHECK(sp[i].first == int64_t(256 + merges.size() + i),
                   path + ": special token '" + sp[i].second + "' must have id " +
                       std::to_string(256 + merges.size() + i));
      specials.push_back(sp[i].second);
    }
  } catch (const json::exception& e) {
    throw Error(path + ": malformed merges or special_tokens (" + e.what() + ")");
  }
  try {
    BpeTokenizer t = from_merges(merges, specials);
    t.name_ = path;
    if (pattern != "gpt2") {
      t.pattern_ = pattern;
      t.pre_ = std::make_unique<Pretokenizer>(pattern);
    }
    return t;
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

void BpeTokenizer::save_json(const std::string& path) const {
  MESHLM_CHECK(name_ != "gpt2", "GPT-2's tokenizer is not saved in meshlm's format");
  for (size_t i = 0; i < merges_.size(); i++)
    MESHLM_CHECK(ranks_.at(tokens_[size_t(merges_[i].first)] + tokens_[size_t(merges_[i].second)]) == int32_t(256 + i),
                 name_ + ": merge " + std::to_string(i) + " does not make token 256 + " + std::to_string(i) +
                     "; meshlm's format cannot hold this tokenizer (save it as a tokenizer.json)");
  MESHLM_CHECK(!pattern_name(pattern_).empty(), name_ + ": meshlm's format holds the gpt2 and llama3 patterns only");
  json j = {{"format", "meshlm-bpe"}, {"version", 1}, {"pattern", pattern_name(pattern_)}};
  j["merges"] = json::array();
  for (const auto& [a, b] : merges_) j["merges"].push_back({a, b});
  j["special_tokens"] = json::object();
  for (size_t i = 0; i < specials_.size(); i++) j["special_tokens"][specials_[i]] = first_special_ + int32_t(i);
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp);
  MESHLM_CHECK(out, tmp + ": cannot create");
  out << j.dump() << "\n";
  out.close();
  MESHLM_CHECK(out, tmp + ": write failed");
  std::rename(tmp.c_str(), path.c_str());
}

// tiktoken's byte-pair merge: boundaries between parts; repeatedly join the adjacent pair whose
// joined bytes have the lowest rank. O(n^2) in the piece length, and pieces are short.
void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (auto it = ranks_.find(piece); it != ranks_.end()) {
    out.push_back(it->second);
    return;
  }
  const size_t n = piece.size();
  std::vector<size_t> start(n + 1);  // part i is piece[start[i], start[i+1])
  for (size_t i = 0; i <= n; i++) start[i] = i;
  auto rank_of = [&](size_t i) -> int32_t {  // rank of parts i and i+1 joined
    if (i + 2 >= start.size()) return INT32_MAX;
    auto it = ranks_.find(piece.substr(start[i], start[i + 2] - start[i]));
    return it == ranks_.end() ? INT32_MAX : it->second;
  };
  std::vector<int32_t> rank(n);
  for (size_t i = 0; i + 1 < n; i++) rank[i] = rank_of(i);
  if (n) rank[n - 1] = INT32_MAX;
  while (rank.size() > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < rank.size(); i++)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == INT32_MAX) break;
    start.erase(start.begin() + long(best) + 1);
    rank.erase(rank.begin() + long(best) + 1);
    rank[best] = rank_of(best);
    if (best > 0) rank[best - 1] = rank_of(best - 1);
  }
  for (size_t i = 0; i + 1 < start.size(); i++)
    out.push_back(ranks_.find(piece.substr(start[i], start[i + 1] - start[i]))->second);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) {
  pieces_.clear();
  pre_->split(text, pieces_);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  for (std::string_view p : pieces_) encode_piece(p, ids);
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (int32_t id : ids) {
    MESHLM_CHECK(id >= 0 && id < int32_t(tokens_.size()),
                 "decode: token id " + std::to_string(id) + " is outside the vocabulary of " +
                     std::to_string(tokens_.size()));
    s += tokens_[size_t(id)];
  }
  return s;
}

BpeTokenizer load_tokenizer(const std::string& spec) {
  if (spec == "bytes") {
    BpeTokenizer t = from_merges_bytes();
    return t;
  }
  if (spec == "gpt2") {
    const char* env = std::getenv("MESHLM_GPT2_DIR");
    return BpeTokenizer::load_gpt2(env && *env ? env : MESHLM_GPT2_DIR);
  }
  MESHLM_CHECK(std::filesystem::exists(spec),
               "--tokenizer: '" + spec + "' is not bytes, gpt2, a directory or a tokenizer file");
  if (std::filesystem::is_directory(spec)) return BpeTokenizer::load_gpt2(spec);
  return tokenizer_file_name(spec) == "tokenizer.json" ? load_hf_tokenizer(spec) : BpeTokenizer::load_json(spec);
}

std::string tokenizer_file_name(const std::string& path) {
  json j;
  try {
    j = parse_json_file(path);
  } catch (const Error&) {
    return "meshlm_tokenizer.json";  // not JSON: meshlm's reader names the problem
  }
  return is_hf_tokenizer_json(j) ? "tokenizer.json" : "meshlm_tokenizer.json";
}

std::string tokenizer_file_in(const std::string& dir) {
  for (const char* name : {"meshlm_tokenizer.json", "tokenizer.json"}) {
    const std::filesystem::path p = std::filesystem::path(dir) / name;
    if (std::filesystem::is_regular_file(p)) return p.string();
  }
  return "";
}

}  // namespace meshlm
