// Token shards in llm.c's format: a 1024-byte header of 256 little-endian int32 (magic, version,
// token count, rest zero), then the tokens. magic 20240520 / version 1 holds uint16 tokens;
// magic 20240801 / version 7 holds uint32 tokens (vocabularies over 65535). Read by mmap.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace meshlm {

constexpr int32_t kShardMagicU16 = 20240520, kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801, kShardVersionU32 = 7;
constexpr size_t kShardHeaderBytes = 1024;

class Shard {
 public:
  // Maps the file and validates its header; throws meshlm::Error naming the file and problem.
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  Shard(Shard&& o) noexcept;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }  // tokens
  int32_t token(int64_t i) const {
    return wide_ ? int32_t(static_cast<const uint32_t*>(tokens_)[i])
                 : int32_t(static_cast<const uint16_t*>(tokens_)[i]);
  }
  void read(int64_t begin, int64_t n, int32_t* out) const;  // tokens [begin, begin + n)
  int32_t max_token() const;                                 // scans once, cached
  // Index of the first token >= limit, or -1; and its byte offset in the file.
  int64_t first_token_at_least(int32_t limit) const;
  int64_t byte_offset(int64_t index) const { return int64_t(kShardHeaderBytes) + index * (wide_ ? 4 : 2); }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const void* tokens_ = nullptr;
  int64_t count_ = 0;
  bool wide_ = false;
  mutable int32_t max_token_ = -1;
};

// Writes tokens as a shard (uint16 when every id fits, else the uint32 variant), atomically.
void write_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size);

// Sorted shard paths in `dir` whose file name contains `split` ("train" or "val") and ends in
// .bin; throws when there are none.
std::vector<std::string> list_shards(const std::string& dir, const std::string& split);

}  // namespace meshlm
