// TensorBoard event files, written directly: a TFRecord stream (each record: its length as
// uint64, a masked CRC-32C of the length, the bytes, a masked CRC-32C of the bytes) of Event
// protocol buffers (wall_time, step, and either file_version "brain.Event:2" first, or a
// Summary of scalar values: tag and simple_value). Hand-encoded: four fields of two messages
// need no protobuf library. `tensorboard --logdir <out>/tensorboard` reads them.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/files.h"

namespace meshlm {

// CRC-32C (Castagnoli), as TFRecord uses it; masked as TFRecord stores it.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  // Creates dir and a new events.out.tfevents.<seconds>.<host>.<pid> file in it.
  explicit TensorBoardWriter(const std::string& dir);
  // One event of scalars at `step` (written and flushed).
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  AppendFile file_;
};

}  // namespace meshlm
