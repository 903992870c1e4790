#include "train/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/lowp.h"

namespace meshlm {

using nlohmann::json;

void write_safetensors(const std::string& path, const std::vector<SafeTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata, const std::string& dtype) {
  MESHLM_CHECK(dtype == "F32" || dtype == "BF16", path + ": safetensors are written in F32 or BF16, not " + dtype);
  const size_t esz = dtype == "F32" ? 4 : 2;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    const size_t bytes = size_t(shape_numel(t.shape)) * esz;
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h += ' ';  // data starts 8-byte aligned
  AppendFile out(path, false);  // every write checked (a full disk throws naming the file)
  const uint64_t n = h.size();
  out.write(std::string_view(reinterpret_cast<const char*>(&n), 8));
  out.write(h);
  std::vector<uint16_t> half;
  for (const auto& t : tensors) {
    const int64_t n = shape_numel(t.shape);
    if (esz == 4) {
      out.write(std::string_view(reinterpret_cast<const char*>(t.data), size_t(n) * 4));
      continue;
    }
    half.resize(size_t(n));
    lowp::from_f32(DType::bf16, half.data(), t.data, n);
    out.write(std::string_view(reinterpret_cast<const char*>(half.data()), size_t(n) * 2));
  }
  out.sync();
}

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  MESHLM_CHECK(fd >= 0, path + ": cannot open (" + std::strerror(errno) + ")");
  const off_t end = ::lseek(fd, 0, SEEK_END);
  const size_t size = end > 0 ? size_t(end) : 0;
  if (size < 8) {
    ::close(fd);
    throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes)");
  }
  map_ = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  MESHLM_CHECK(map_ != MAP_FAILED, path + ": mmap failed");
  map_bytes_ = size;
  const char* bytes = static_cast<const char*>(map_);
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  MESHLM_CHECK(n <= size - 8 && n < (100u << 20), path + ": truncated or corrupt safetensors header");
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const std::exception& e) {
    throw Error(path + ": corrupt safetensors header (" + e.what() + ")");
  }
  const size_t data_bytes = size - 8 - n;
  size_t covered = 0;
  MESHLM_CHECK(header.is_object(), path + ": corrupt safetensors header (not a JSON object)");
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      MESHLM_CHECK(it->is_object(), path + ": corrupt safetensors header (__metadata__ is not an object)");
      for (auto m = it->begin(); m != it->end(); ++m) {
        MESHLM_CHECK(m->is_string(), path + ": corrupt safetensors header (__metadata__ value '" + m.key() +
                                         "' is not a string)");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    Entry e;
    try {
      e.dtype = it->at("dtype").get<std::string>();
      e.shape = it->at("shape").get<Shape>();
      e.begin = it->at("data_offsets").at(0).get<size_t>();
      e.end = it->at("data_offsets").at(1).get<size_t>();
    } catch (const std::exception& ex) {
      throw Error(path + ": bad entry '" + it.key() + "' in safetensors header");
    }
    // Every dtype of the format is read past (a model's buffers may be BOOL or I64); only
    // F32, F16 and BF16 tensors load into a model.
    static const std::map<std::string, size_t> kSizes = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4},
        {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    const auto size = kSizes.find(e.dtype);
    MESHLM_CHECK(size != kSizes.end(), path + ": tensor '" + it.key() + "' has unknown dtype " + e.dtype);
    const size_t esz = size->second;
    MESHLM_CHECK(e.begin <= e.end && e.end <= data_bytes &&
                     e.end - e.begin == size_t(shape_numel(e.shape)) * esz,
                 path + ": tensor '" + it.key() + "' has offsets outside the file (truncated?)");
    covered = std::max(covered, e.end);
    entries_[it.key()] = e;
  }
  MESHLM_CHECK(covered == data_bytes, path + ": " + std::to_string(data_bytes - covered) +
                                          " trailing bytes after the last tensor");
  data_ = bytes + 8 + n;
}

SafeTensorsFile::~SafeTensorsFile() {
  if (map_) ::munmap(map_, map_bytes_);
}

const SafeTensorsFile::Entry& SafeTensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  MESHLM_CHECK(it != entries_.end(), path_ + ": tensor '" + name + "' is missing");
  return it->second;
}

void SafeTensorsFile::read_f32(const std::string& name, const Shape& shape, float* dst) const {
  const Entry& e = entry(name);
  MESHLM_CHECK(e.dtype == "F32", path_ + ": tensor '" + name + "' is " + e.dtype + ", expected F32");
  MESHLM_CHECK(e.shape == shape, path_ + ": tensor '" + name + "' has shape " + shape_str(e.shape) +
                                     " but the model expects " + shape_str(shape));
  std::memcpy(dst, data_ + e.begin, e.end - e.begin);
}

void SafeTensorsFile::read_f32_range(const std::string& name, int64_t first, int64_t n, float* dst) const {
  const Entry& e = entry(name);
  MESHLM_CHECK(e.dtype == "F32", path_ + ": tensor '" + name + "' is " + e.dtype + ", expected F32");
  MESHLM_CHECK(first >= 0 && n >= 0 && size_t(first + n) * 4 <= e.end - e.begin,
               path_ + ": elements [" + std::to_string(first) + ", " + std::to_string(first + n) + ") are outside tensor '" +
                   name + "' " + shape_str(e.shape));
  std::memcpy(dst, data_ + e.begin + size_t(first) * 4, size_t(n) * 4);
}

void SafeTensorsFile::read_as_f32(const std::string& name, const Shape& shape, float* dst) const {
  const Entry& e = entry(name);
  if (e.dtype == "F32") return read_f32(name, shape, dst);
  MESHLM_CHECK(e.dtype == "F16" || e.dtype == "BF16",
               path_ + ": tensor '" + name + "' is " + e.dtype + "; weights load from F32, F16 or BF16");
  MESHLM_CHECK(e.shape == shape, path_ + ": tensor '" + name + "' has shape " + shape_str(e.shape) +
                                     " but the model expects " + shape_str(shape));
  std::vector<uint16_t> bits(size_t(shape_numel(shape)));
  std::memcpy(bits.data(), data_ + e.begin, e.end - e.begin);
  lowp::to_f32(e.dtype == "BF16" ? DType::bf16 : DType::fp16, dst, bits.data(), int64_t(bits.size()));
}

}  // namespace meshlm
