#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace meshlm {

namespace {

std::array<uint32_t, 256> crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    t[i] = c;
  }
  return t;
}

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char(0x80 | (v & 0x7F));
    v >>= 7;
  }
  out += char(v);
}

template <typename T>
void raw(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian on every machine meshlm builds for
  out.append(b, sizeof(T));
}

void bytes_field(std::string& out, int field, const std::string& bytes) {
  varint(out, uint64_t(field) << 3 | 2);
  varint(out, bytes.size());
  out += bytes;
}

// Event.wall_time (1, double) and Event.step (2, int64).
std::string event_head(int64_t step) {
  std::string e;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  varint(e, 1 << 3 | 1);
  raw(e, now);
  varint(e, 2 << 3 | 0);
  varint(e, uint64_t(step));
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

namespace {

std::string event_file_name(const std::string& dir) {
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::filesystem::create_directories(dir);
  return (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(secs) + "." + host + "." +
                                        std::to_string(::getpid()))).string();
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) : path_(event_file_name(dir)), file_(path_, false) {
  std::string e = event_head(0);
  bytes_field(e, 3, "brain.Event:2");  // Event.file_version
  record(e);
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes_field(value, 1, tag);  // Summary.Value.tag
    varint(value, 2 << 3 | 5);   // Summary.Value.simple_value (float)
    raw(value, float(v));
    bytes_field(summary, 1, value);  // Summary.value
  }
  std::string e = event_head(step);
  bytes_field(e, 5, summary);  // Event.summary
  record(e);
}

void TensorBoardWriter::record(const std::string& event) {
  std::string r;
  const uint64_t n = event.size();
  raw(r, n);
  raw(r, masked_crc32c(&n, 8));
  r += event;
  raw(r, masked_crc32c(event.data(), event.size()));
  file_.write(r);  // one write per record: a reader never sees half of one
}

}  // namespace meshlm
