// Files the trainer writes, written so that a kill at any moment or a full disk never leaves a
// damaged file behind that something later trusts, and never goes unreported.
//   write_file_atomic   the whole content under a temporary name beside the target, fsync'ed,
//                       renamed over it, the directory fsync'ed: readers see the old file or
//                       the new one, never a part
//   AppendFile          one line per write(2) to an O_APPEND file: a kill leaves at most a
//                       torn last line (readers skip it); every error (ENOSPC, EFBIG past
//                       RLIMIT_FSIZE, EIO) throws naming the file
// Every failure throws meshlm::Error with the path and strerror.
#pragma once
#include <string>
#include <string_view>

namespace meshlm {

void write_file_atomic(const std::string& path, std::string_view content);
// fsync a file or a directory; throws on failure (a missing path is not an error).
void fsync_path(const std::string& path);

class AppendFile {
 public:
  AppendFile(const std::string& path, bool append);  // append = false: truncate
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void write(std::string_view text);  // all of it, or throws
  void sync();                        // fsync (at checkpoints: the lines up to here are durable)
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace meshlm
