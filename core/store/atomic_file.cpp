// write_file_atomic: the temp file lives in the target's directory because
// rename(2) is atomic only within one filesystem. The directory fsync makes
// the rename itself durable, not just the data.
#include "core/store/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "core/util/uuid.hpp"

namespace rch {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // close(2) can report a deferred write error (NFS), so it is checked once.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Unlinks the temp file unless the rename consumed it.
class TempGuard {
 public:
  explicit TempGuard(std::filesystem::path p) : path_(std::move(p)) {}
  TempGuard(const TempGuard&) = delete;
  TempGuard& operator=(const TempGuard&) = delete;
  ~TempGuard() {
    if (armed_) ::unlink(path_.c_str());
  }
  void release() { armed_ = false; }

 private:
  std::filesystem::path path_;
  bool armed_ = true;
};

Error fail(const std::filesystem::path& path, const char* step, int err) {
  return make_error("cannot write " + path.string() + ": " + step + ": " + std::strerror(err));
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view contents, unsigned mode) {
  const std::filesystem::path name = path.filename();
  if (name.empty() || name == "." || name == "..") {
    return make_error("cannot write " + path.string() + ": not a file name");
  }
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";

  std::uint32_t salt = 0;
  fill_random(&salt, sizeof salt);
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%08x", static_cast<long>(::getpid()), salt);
  const std::filesystem::path tmp = dir / ("." + name.string() + suffix);

  // O_EXCL: never write through a file or symlink someone planted at the name.
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return fail(path, "create temp file", errno);
  TempGuard guard(tmp);

  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) return fail(path, "chmod", errno);
  if (!write_all(fd.get(), contents)) return fail(path, "write", errno);
  if (::fsync(fd.get()) != 0) return fail(path, "fsync", errno);
  if (fd.close() != 0) return fail(path, "close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(path, "rename", errno);
  guard.release();

  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) return fail(path, "open directory for fsync", errno);
  // Some filesystems cannot fsync a directory (EINVAL); nothing more can be done there.
  if (::fsync(dir_fd.get()) != 0 && errno != EINVAL) return fail(path, "fsync directory", errno);
  return {};
}

Result<std::string> read_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::string out;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace rch
