#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace meshlm {

namespace {

std::string why() { return std::strerror(errno); }

void write_all(int fd, std::string_view text, const std::string& path) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    MESHLM_CHECK(n > 0, path + ": write failed (" + (n < 0 ? why() : std::string("no progress")) + ")");
    text.remove_prefix(size_t(n));
  }
}

}  // namespace

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on a directory (EINVAL); that is not a lost write.
  MESHLM_CHECK(r == 0 || err == EINVAL || err == EROFS, path + ": fsync failed (" + std::strerror(err) + ")");
}

void write_file_atomic(const std::string& path, std::string_view content) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MESHLM_CHECK(fd >= 0, tmp + ": cannot create (" + why() + ")");
  try {
    write_all(fd, content, path);
    MESHLM_CHECK(::fsync(fd) == 0, path + ": fsync failed (" + why() + ")");
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  MESHLM_CHECK(::close(fd) == 0, path + ": close failed (" + why() + ")");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string e = why();
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot rename into place (" + e + ")");
  }
  const fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string());
}

AppendFile::AppendFile(const std::string& path, bool append) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC | O_APPEND), 0644);
  MESHLM_CHECK(fd_ >= 0, path + ": cannot open for writing (" + why() + ")");
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::write(std::string_view text) { write_all(fd_, text, path_); }

void AppendFile::sync() { MESHLM_CHECK(::fsync(fd_) == 0, path_ + ": fsync failed (" + why() + ")"); }

}  // namespace meshlm
