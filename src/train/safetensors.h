// The safetensors file format (Hugging Face): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
// raw little-endian tensor bytes. F32 or BF16 (rounded to nearest even) is written; F32, F16 and
// BF16 are read, the 16-bit ones up-cast exactly; reading validates every offset.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace meshlm {

struct SafeTensorRef {  // a tensor to write: bytes borrowed from the caller
  std::string name;
  Shape shape;
  const float* data;
};


void write_safetensors(const std::string& path, const std::vector<SafeTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       const std::string& dtype = "F32");

class SafeTensorsFile {
 public:
  struct Entry {
    std::string dtype;
    Shape shape;
    size_t begin = 0, end = 0;  // byte offsets into the data section
  };
  // Reads and validates the whole file; throws meshlm::Error naming the file and problem.
  explicit SafeTensorsFile(const std::string& path);  // maps the file read-only
  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const Entry& entry(const std::string& name) const;
  // Copies tensor `name` into dst, checking dtype F32 and that the shape equals `shape`.
  void read_f32(const std::string& name, const Shape& shape, float* dst) const;
  // Elements [first, first + n) of the F32 tensor `name` (row-major), only those bytes read.
  void read_f32_range(const std::string& name, int64_t first, int64_t n, float* dst) const;
  // The same for an F32, F16 or BF16 tensor, the 16-bit values up-cast (exact).
  void read_as_f32(const std::string& name, const Shape& shape, float* dst) const;
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const char* data_ = nullptr;  // the data section inside the mapping
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace meshlm
