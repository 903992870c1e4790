#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace meshlm {

namespace fs = std::filesystem;

Shard::Shard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  MESHLM_CHECK(fd >= 0, path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  ::fstat(fd, &st);
  map_bytes_ = size_t(st.st_size);
  if (map_bytes_ < kShardHeaderBytes) {
    ::close(fd);
    throw Error(path + ": truncated shard (" + std::to_string(map_bytes_) +
                " bytes, smaller than the 1024-byte header)");
  }
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  MESHLM_CHECK(map_ != MAP_FAILED, path + ": mmap failed");
  int32_t header[3];
  std::memcpy(header, map_, sizeof header);
  size_t width;
  if (header[0] == kShardMagicU16 && header[1] == kShardVersionU16) {
    width = 2;
  } else if (header[0] == kShardMagicU32 && header[1] == kShardVersionU32) {
    width = 4;
    wide_ = true;
  } else {
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw Error(path + ": not a token shard (magic " + std::to_string(header[0]) + " version " +
                std::to_string(header[1]) + " at byte 0; expected llm.c's 20240520/1 or 20240801/7). A headerless " +
                "file of uint16 ids (nanoGPT's train.bin/val.bin) converts with: meshlm prepare --headerless " + path +
                " --tokenizer gpt2 --output DIR");
  }
  count_ = header[2];
  const size_t want = kShardHeaderBytes + size_t(count_) * width;
  if (count_ < 0 || map_bytes_ != want) {
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw Error(path + ": header says " + std::to_string(count_) + " tokens (" +
                std::to_string(want) + " bytes) but the file ends at byte " + std::to_string(map_bytes_) +
                " (truncated or corrupt)");
  }
  tokens_ = static_cast<const char*>(map_) + kShardHeaderBytes;
}

Shard::~Shard() {
  if (map_) ::munmap(map_, map_bytes_);
}

Shard::Shard(Shard&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), map_bytes_(o.map_bytes_), tokens_(o.tokens_),
      count_(o.count_), wide_(o.wide_), max_token_(o.max_token_) {
  o.map_ = nullptr;
}

void Shard::read(int64_t begin, int64_t n, int32_t* out) const {
  MESHLM_CHECK(begin >= 0 && begin + n <= count_, path_ + ": read past the end of the shard");
  for (int64_t i = 0; i < n; i++) out[i] = token(begin + i);
}

int32_t Shard::max_token() const {
  if (max_token_ < 0) {
    int32_t m = 0;
    for (int64_t i = 0; i < count_; i++) m = std::max(m, token(i));
    max_token_ = m;
  }
  return max_token_;
}

int64_t Shard::first_token_at_least(int32_t limit) const {
  if (max_token() < limit) return -1;
  for (int64_t i = 0; i < count_; i++)
    if (token(i) >= limit) return i;
  return -1;
}

void write_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size) {
  const bool wide = vocab_size > 65536;
  int32_t header[256] = {};
  header[0] = wide ? kShardMagicU32 : kShardMagicU16;
  header[1] = wide ? kShardVersionU32 : kShardVersionU16;
  header[2] = int32_t(tokens.size());
  MESHLM_CHECK(tokens.size() < (1ull << 31), path + ": too many tokens for one shard");
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  MESHLM_CHECK(f, tmp + ": cannot create (" + std::strerror(errno) + ")");
  bool ok = std::fwrite(header, sizeof header, 1, f) == 1;
  if (wide) {
    std::vector<uint32_t> buf(tokens.begin(), tokens.end());
    ok = ok && std::fwrite(buf.data(), 4, buf.size(), f) == buf.size();
  } else {
    std::vector<uint16_t> buf(tokens.size());
    for (size_t i = 0; i < tokens.size(); i++) buf[i] = uint16_t(tokens[i]);
    ok = ok && std::fwrite(buf.data(), 2, buf.size(), f) == buf.size();
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(path + ": write failed");
  }
  fs::rename(tmp, path);
}

std::vector<std::string> list_shards(const std::string& dir, const std::string& split) {
  MESHLM_CHECK(fs::is_directory(dir), dir + ": no such data directory");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > 4 && name.ends_with(".bin") &&
        name.find(split) != std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  MESHLM_CHECK(!out.empty(), dir + ": no '" + split + "' shards (*" + split + "*.bin)");
  return out;
}

}  // namespace meshlm
