#include "data/hf_tokenizer.h"

#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "data/pretokenize.h"

namespace meshlm {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// GPT-2's bytes_to_unicode: byte -> code point (printable Latin-1 as itself, the rest 256...).
std::vector<uint32_t> codepoint_of_byte() {
  std::vector<uint32_t> cp(256);
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cp[size_t(b)] = printable ? uint32_t(b) : next++;
  }
  return cp;
}

}  // namespace

std::vector<int32_t> gpt2_byte_of_codepoint() {
  std::vector<int32_t> byte_of(512, -1);
  const std::vector<uint32_t> cp = codepoint_of_byte();
  for (int b = 0; b < 256; b++) byte_of[cp[size_t(b)]] = b;
  return byte_of;
}

// Every code point is below 0x800: one or two bytes of UTF-8.
std::string gpt2_spell(const std::string& bytes) {
  static const std::vector<uint32_t> cp_of = codepoint_of_byte();
  std::string s;
  for (unsigned char c : bytes) {
    const uint32_t cp = cp_of[c];
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

bool gpt2_unspell(const std::string& text, const std::vector<int32_t>& byte_of, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = text[i];
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < text.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    if (cp >= byte_of.size() || byte_of[cp] < 0) return false;
    out += char(byte_of[cp]);
  }
  return true;
}

namespace {

ordered_json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

ordered_json pre_tokenizer(const std::string& pattern) {
  if (pattern_name(pattern) == "gpt2") return byte_level(true);
  const ordered_json split = {{"type", "Split"}, {"pattern", {{"Regex", pattern_regex(pattern)}}},
                              {"behavior", "Isolated"}, {"invert", false}};
  return {{"type", "Sequence"}, {"pretokenizers", {split, byte_level(false)}}};
}

// The pattern a tokenizer.json's pre_tokenizer applies, or an error saying what is not meshlm's.
std::string read_pattern(const json& pre, const std::string& name) {
  MESHLM_CHECK(pre.is_object(), name + ": no pre_tokenizer (meshlm needs byte-level pre-tokenization)");
  auto byte_level_ok = [&](const json& p, bool regex) {
    return p.value("type", "") == "ByteLevel" && !p.value("add_prefix_space", false) && p.value("use_regex", true) == regex;
  };
  if (byte_level_ok(pre, true)) return "gpt2";
  MESHLM_CHECK(pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].size() == 2,
               name + ": pre_tokenizer is not ByteLevel (GPT-2's pattern) or Split + ByteLevel; meshlm cannot express it");
  const json& split = pre["pretokenizers"][0];
  MESHLM_CHECK(split.value("type", "") == "Split" && split.value("behavior", "") == "Isolated" &&
                   !split.value("invert", false) && split.contains("pattern") && split["pattern"].contains("Regex"),
               name + ": the first pre-tokenizer must be Split (Regex, Isolated)");
  MESHLM_CHECK(byte_level_ok(pre["pretokenizers"][1], false),
               name + ": the second pre-tokenizer must be ByteLevel without regex or prefix space");
  const std::string regex = split["pattern"]["Regex"].get<std::string>();
  const std::string known = pattern_name(regex);
  return known.empty() ? regex : known;
}

}  // namespace

bool is_hf_tokenizer_json(const json& j) { return j.is_object() && j.contains("model") && j["model"].is_object(); }

ordered_json hf_tokenizer_json(const BpeTokenizer& tok) {
  ordered_json vocab = ordered_json::object();
  for (int32_t id = 0; id < tok.first_special(); id++) vocab[gpt2_spell(tok.token_bytes(id))] = id;
  ordered_json added = ordered_json::array();
  for (int32_t id = tok.first_special(); id < int32_t(tok.vocab_size()); id++) {
    vocab[tok.token_bytes(id)] = id;
    added.push_back({{"id", id}, {"content", tok.token_bytes(id)}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  ordered_json merges = ordered_json::array();
  for (const auto& [a, b] : tok.merges()) merges.push_back(gpt2_spell(tok.token_bytes(a)) + " " + gpt2_spell(tok.token_bytes(b)));
  ordered_json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                        {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                        {"byte_fallback", false}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", merges}};
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
          {"normalizer", nullptr}, {"pre_tokenizer", pre_tokenizer(tok.pattern())},
          {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model", model}};
}

namespace {

// The model section: id -> bytes (specials as themselves) and the merges as ids.
void read_model(const json& model, const json& added, const std::string& name, std::vector<std::string>& tokens,
                std::vector<std::pair<int32_t, int32_t>>& merges, int32_t& n_specials) {
  MESHLM_CHECK(model.value("type", "") == "BPE", name + ": model.type is not BPE");
  MESHLM_CHECK(model.value("continuing_subword_prefix", json("")).is_null() || model.value("continuing_subword_prefix", "").empty(),
               name + ": a continuing_subword_prefix is not byte-level BPE");
  MESHLM_CHECK(!model.value("byte_fallback", false), name + ": byte_fallback (SentencePiece-style) is not byte-level BPE");
  MESHLM_CHECK(model.contains("vocab") && model["vocab"].is_object(), name + ": model.vocab missing");
  const std::vector<int32_t> byte_of = gpt2_byte_of_codepoint();
  std::map<int64_t, std::string> by_id;
  std::map<std::string, int64_t> specials;  // content -> id
  for (const auto& a : added) {
    MESHLM_CHECK(a.value("special", false), name + ": added token '" + a.value("content", "") +
                                                "' is not special; meshlm has no added ordinary tokens");
    specials[a.at("content").get<std::string>()] = a.at("id").get<int64_t>();
    by_id[a.at("id").get<int64_t>()] = a.at("content").get<std::string>();
  }
  std::string bytes;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    const int64_t id = it->get<int64_t>();
    if (auto s = specials.find(it.key()); s != specials.end()) {
      MESHLM_CHECK(s->second == id, name + ": '" + it.key() + "' has two ids");
      continue;
    }
    MESHLM_CHECK(gpt2_unspell(it.key(), byte_of, bytes), name + ": token '" + it.key() + "' is not in the byte-level alphabet");
    MESHLM_CHECK(by_id.emplace(id, bytes).second, name + ": id " + std::to_string(id) + " is used twice");
  }
  MESHLM_CHECK(!by_id.empty() && by_id.begin()->first == 0 && by_id.rbegin()->first == int64_t(by_id.size()) - 1,
               name + ": ids are not 0.." + std::to_string(by_id.size() - 1) + " without gaps");
  for (auto& [id, b] : by_id) tokens.push_back(b);
  n_specials = int32_t(specials.size());
  for (const auto& [content, id] : specials)
    MESHLM_CHECK(id >= int64_t(tokens.size()) - n_specials,
                 name + ": special token '" + content + "' is not after every ordinary id");
  std::map<std::string, int32_t> id_of;
  for (int32_t id = 0; id < int32_t(tokens.size()) - n_specials; id++) id_of[tokens[size_t(id)]] = id;
  std::string left, right;
  for (const auto& m : model.value("merges", json::array())) {
    std::string l, r;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      MESHLM_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                   name + ": merge '" + s + "' is not 'left right'");
      l = s.substr(0, sp);
      r = s.substr(sp + 1);
    } else {
      l = m.at(0).get<std::string>();
      r = m.at(1).get<std::string>();
    }
    MESHLM_CHECK(gpt2_unspell(l, byte_of, left) && gpt2_unspell(r, byte_of, right) && id_of.count(left) && id_of.count(right),
                 name + ": merge '" + l + " " + r + "' names a token outside the vocabulary");
    merges.emplace_back(id_of[left], id_of[right]);
  }
}

}  // namespace

BpeTokenizer parse_hf_tokenizer(const std::string& text, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(name + ": not valid JSON (" + e.what() + ")");
  }
  MESHLM_CHECK(is_hf_tokenizer_json(j), name + ": not a Hugging Face tokenizer.json (no \"model\")");
  MESHLM_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(),
               name + ": has a normalizer; meshlm's byte-level BPE applies none");
  std::vector<std::string> tokens;
  std::vector<std::pair<int32_t, int32_t>> merges;
  int32_t n_specials = 0;
  std::string pattern;
  try {
    pattern = read_pattern(j.value("pre_tokenizer", json()), name);
    read_model(j["model"], j.value("added_tokens", json::array()), name, tokens, merges, n_specials);
  } catch (const json::exception& e) {
    throw Error(name + ": malformed (" + e.what() + ")");
  }
  return BpeTokenizer::from_vocab(name, std::move(tokens), std::move(merges), n_specials, pattern);
}

BpeTokenizer load_hf_tokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MESHLM_CHECK(in, path + ": cannot open tokenizer file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_tokenizer(ss.str(), path);
}

}  // namespace meshlm
