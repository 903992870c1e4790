#include "data/prepare.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/checksum.h"
#include "core/files.h"
#include "core/error.h"
#include "data/bpe.h"
#include "data/shard.h"

namespace meshlm {

namespace fs = std::filesystem;

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    MESHLM_CHECK(fs::exists(in), in + ": no such input file or directory");
    if (fs::is_directory(in)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(in))
        if (e.is_regular_file()) found.push_back(e.path().string());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  return files;
}

// Writes consecutive shards <dir>/<split>_NNNNNN.bin of at most `per_shard` tokens.
class ShardSink {
 public:
  ShardSink(std::string dir, std::string split, int64_t per_shard, int64_t vocab)
      : dir_(std::move(dir)), split_(std::move(split)), per_shard_(per_shard), vocab_(vocab) {}
  void add(const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
      buf_.push_back(id);
      if (int64_t(buf_.size()) == per_shard_) flush();
    }
  }
  void finish() {
    if (!buf_.empty()) flush();
  }
  int64_t tokens() const { return total_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  void flush() {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%06zu.bin", split_.c_str(), files_.size());
    const std::string path = (fs::path(dir_) / name).string();
    write_shard(path, buf_, vocab_);
    files_.push_back(path);
    total_ += int64_t(buf_.size());
    buf_.clear();
  }
  std::string dir_, split_;
  int64_t per_shard_, vocab_, total_ = 0;
  std::vector<int32_t> buf_;
  std::vector<std::string> files_;
};

// The result, and manifest.json beside the shards: the tokenizer (a trained one is copied in,
// so the data directory is self-contained), counts, and each shard's size and checksum.
PrepareResult write_manifest(const PrepareOptions& opt, const std::vector<std::string>& files, int64_t total_bytes,
                             const ShardSink& train, const ShardSink& val, int64_t vocab, int32_t eot,
                             int64_t documents) {
  PrepareResult r;
  r.train_tokens = train.tokens();
  r.val_tokens = val.tokens();
  r.vocab_size = vocab;
  r.documents = documents;
  r.bytes = total_bytes;
  nlohmann::ordered_json shards = nlohmann::ordered_json::array();
  for (const auto* sink : {&train, &val})
    for (const auto& f : sink->files()) {
      size_t size = 0;
      const uint64_t sum = checksum_file(f, &size);
      shards.push_back({{"file", fs::path(f).filename().string()}, {"bytes", size}, {"checksum", checksum_hex(sum)}});
      r.shards.push_back(f);
    }
  std::string tokenizer = opt.tokenizer;
  if (tokenizer != "bytes" && tokenizer != "gpt2" && fs::is_regular_file(tokenizer)) {
    const std::string name = tokenizer_file_name(tokenizer);
    fs::copy_file(tokenizer, fs::path(opt.output) / name, fs::copy_options::overwrite_existing);
    tokenizer = name;
  }
  nlohmann::ordered_json manifest = {{"format", "llm.c token shards: 256 x int32 header (magic, version, count), then tokens"},
                                     {"tokenizer", tokenizer},
                                     {"vocab_size", vocab},
                                     {"eot_token", eot},
                                     {"documents", r.documents},
                                     {"input_bytes", total_bytes},
                                     {"train_tokens", r.train_tokens},
                                     {"val_tokens", r.val_tokens},
                                     {"inputs", files},
                                     {"shards", shards}};
  write_file_atomic((fs::path(opt.output) / "manifest.json").string(), manifest.dump(2) + "\n");
  return r;
}

}  // namespace

size_t safe_cut(const char* text, size_t n) {
  for (size_t p = n - 1; p >= 2 && p < n; p--)  // text[p] must exist to be checked
    if (text[p - 1] == '\n' && !is_space(text[p - 2]) && !is_space(text[p])) return p;
  return 0;
}

namespace {

bool is_jsonl(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".ndjson";
}

// One JSONL file: each line a JSON object whose `key` string is a document (with <|endoftext|>
// before it). Records are encoded in batches on all threads; the split into val happens at a
// record boundary once `split_byte` bytes of the input have gone by. Returns the documents.
int64_t add_jsonl(const std::string& path, const std::string& key, std::vector<std::unique_ptr<BpeTokenizer>>& toks,
                  int32_t eot, int64_t split_byte, bool has_val, int64_t& done, bool& in_val, ShardSink& train,
                  ShardSink& val) {
  std::ifstream in(path, std::ios::binary);
  MESHLM_CHECK(in, path + ": cannot read input file");
  const size_t batch = toks.size() * 64;
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> ids;
  int64_t lineno = 0, documents = 0;
  auto flush = [&] {
    ids.assign(docs.size(), {});
#pragma omp parallel for schedule(dynamic, 8) num_threads(int(toks.size()))
    for (size_t i = 0; i < docs.size(); i++) ids[i] = toks[size_t(omp_get_thread_num())]->encode(docs[i]);
    for (auto& d : ids) {
      if (eot >= 0) d.insert(d.begin(), eot);
      (in_val ? val : train).add(d);
    }
    docs.clear();
  };
  for (std::string line; std::getline(in, line);) {
    lineno++;
    done += int64_t(line.size()) + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw Error(path + ":" + std::to_string(lineno) + ": not a JSON object");
    }
    MESHLM_CHECK(j.is_object() && j.contains(key) && j[key].is_string(),
                 path + ":" + std::to_string(lineno) + ": no string field '" + key + "' (--jsonl-key names it)");
    docs.push_back(j[key].get<std::string>());
    documents++;
    if (docs.size() == batch) flush();
    if (!in_val && has_val && done >= split_byte) {
      flush();
      in_val = true;
    }
  }
  flush();
  return documents;
}

void check_options(const PrepareOptions& opt) {
  MESHLM_CHECK(!opt.inputs.empty(), "--input: no input files given");
  MESHLM_CHECK(!opt.output.empty(), "--output: no output directory given");
  MESHLM_CHECK(opt.val_fraction >= 0 && opt.val_fraction < 1,
               "--val-fraction must be in [0, 1) (got " + std::to_string(opt.val_fraction) + ")");
  MESHLM_CHECK(opt.shard_tokens > 0, "--shard-tokens must be positive");
  MESHLM_CHECK(opt.chunk_bytes > 0, "prepare: chunk_bytes must be positive");
}

// The output directory, created, without the stale shards of an earlier run.
void clear_old_shards(const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".bin") fs::remove(e.path());
}

}  // namespace

PrepareResult prepare_shards(const PrepareOptions& opt) {
  check_options(opt);
  const std::vector<std::string> files = expand_inputs(opt.inputs);
  MESHLM_CHECK(!files.empty(), "--input: the directories hold no files");
  int64_t total_bytes = 0;
  for (const auto& f : files) total_bytes += int64_t(fs::file_size(f));
  MESHLM_CHECK(total_bytes > 0, "--input: the corpus is empty");

  // One tokenizer per thread: they hold per-thread matching state.
  const int threads = std::max(1, omp_get_max_threads());
  std::vector<std::unique_ptr<BpeTokenizer>> toks;
  for (int i = 0; i < threads; i++) toks.push_back(std::make_unique<BpeTokenizer>(load_tokenizer(opt.tokenizer)));
  const int64_t vocab = toks[0]->vocab_size();
  const int32_t eot = toks[0]->eot_id();

  clear_old_shards(opt.output);
  ShardSink train(opt.output, "train", opt.shard_tokens, vocab), val(opt.output, "val", opt.shard_tokens, vocab);
  const int64_t split_byte = total_bytes - int64_t(double(total_bytes) * opt.val_fraction);
  int64_t done = 0;
  bool in_val = opt.val_fraction > 0 && split_byte == 0;

  std::vector<std::string> chunks(static_cast<size_t>(threads));
  std::vector<std::vector<int32_t>> ids(static_cast<size_t>(threads));
  int64_t documents = 0;
  for (const auto& path : files) {
    if (is_jsonl(path)) {
      documents += add_jsonl(path, opt.jsonl_key, toks, eot, split_byte, opt.val_fraction > 0, done, in_val, train, val);
      if (opt.progress) opt.progress(done, total_bytes);
      continue;
    }
    documents++;
    std::ifstream in(path, std::ios::binary);
    MESHLM_CHECK(in, path + ": cannot read input file");
    (in_val ? val : train).add(eot >= 0 ? std::vector<int32_t>{eot} : std::vector<int32_t>{});
    std::string carry;
    bool eof = false;
    while (!eof) {
      // Fill up to `threads` chunks, each ending at a safe cut (or the end of the document).
      int n = 0;
      bool cut_for_val = false;
      for (; n < threads && !eof && !cut_for_val; n++) {
        std::string& c = chunks[size_t(n)];
        c.swap(carry);
        carry.clear();
        const size_t have = c.size();
        c.resize(have + opt.chunk_bytes);
        in.read(c.data() + have, std::streamsize(c.size() - have));
        c.resize(have + size_t(in.gcount()));
        MESHLM_CHECK(!in.bad(), path + ": read error at byte " + std::to_string(done));
        eof = in.eof() || in.peek() == EOF;
        size_t cut = c.size();
        // Cross into val at a safe cut near the split point.
        if (!in_val && opt.val_fraction > 0 && done + int64_t(c.size()) > split_byte) {
          const size_t want = size_t(std::max<int64_t>(0, split_byte - done));
          size_t p = want;
          while (p < c.size() && !(p >= 2 && c[p - 1] == '\n' && !is_space(c[p - 2]) && !is_space(c[p]))) p++;
          if (p < c.size()) {
            cut = p;
            cut_for_val = true;
          }
        }
        if (cut == c.size() && !eof) {
          const size_t s = safe_cut(c.data(), c.size());
          if (s > 0) cut = s;  // else: no safe cut in this chunk; keep reading into it
          else {
            carry.swap(c);
            n--;
            continue;
          }
        }
        carry.assign(c, cut, std::string::npos);
        c.resize(cut);
        done += int64_t(cut);
      }
#pragma omp parallel for schedule(static, 1) num_threads(threads)
      for (int i = 0; i < n; i++) ids[size_t(i)] = toks[size_t(omp_get_thread_num())]->encode(chunks[size_t(i)]);
      for (int i = 0; i < n; i++) (in_val ? val : train).add(ids[size_t(i)]);
      if (cut_for_val) in_val = true;
      if (opt.progress) opt.progress(done, total_bytes);
      if (eof && !carry.empty()) {  // the rest of the document
        const auto rest = toks[0]->encode(carry);
        done += int64_t(carry.size());
        carry.clear();
        (in_val ? val : train).add(rest);
      }
    }
    if (!in_val && opt.val_fraction > 0 && done >= split_byte) in_val = true;
  }
  train.finish();
  val.finish();
  MESHLM_CHECK(train.tokens() >= 2, "--input: fewer than 2 train tokens (corpus too small or --val-fraction too large)");

  return write_manifest(opt, files, total_bytes, train, val, vocab, eot, documents);
}

PrepareResult convert_headerless_tokens(const std::vector<std::string>& files, const std::string& tokenizer,
                                        const std::string& output) {
  MESHLM_CHECK(!files.empty(), "--headerless: no files");
  const BpeTokenizer tok = load_tokenizer(tokenizer);
  clear_old_shards(output);
  const int64_t per_shard = 100'000'000;
  ShardSink train(output, "train", per_shard, tok.vocab_size()), val(output, "val", per_shard, tok.vocab_size());
  int64_t bytes = 0;
  for (const auto& path : files) {
    const std::string name = fs::path(path).filename().string();
    const bool is_val = name.find("val") != std::string::npos;
    MESHLM_CHECK(is_val || name.find("train") != std::string::npos,
                 path + ": the name says neither train nor val (nanoGPT writes train.bin and val.bin)");
    std::ifstream in(path, std::ios::binary);
    MESHLM_CHECK(in, path + ": cannot read");
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    MESHLM_CHECK(raw.size() % 2 == 0, path + ": an odd byte count: not uint16 tokens");
    std::vector<int32_t> ids(raw.size() / 2);
    for (size_t i = 0; i < ids.size(); i++) {
      uint16_t v;
      std::memcpy(&v, raw.data() + 2 * i, 2);
      MESHLM_CHECK(int64_t(v) < tok.vocab_size(), path + ": token " + std::to_string(v) + " at " + std::to_string(i) +
                                                      " is outside the " + std::to_string(tok.vocab_size()) +
                                                      "-token vocabulary of " + tokenizer);
      ids[i] = v;
    }
    (is_val ? val : train).add(ids);
    bytes += int64_t(raw.size());
  }
  train.finish();
  val.finish();
  MESHLM_CHECK(train.tokens() >= 2, "--headerless: fewer than 2 train tokens");
  PrepareOptions opt;
  opt.tokenizer = tokenizer;
  opt.output = output;
  return write_manifest(opt, files, bytes, train, val, tok.vocab_size(), tok.eot_id(), 0);  // documents unknown
}

}  // namespace meshlm
