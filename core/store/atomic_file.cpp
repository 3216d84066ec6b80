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

#include "core/store/dirs.hpp"
#include "core/util/unique_fd.hpp"
#include "core/util/uuid.hpp"

namespace rch {
namespace {

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
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return fail(path, "create temp file", errno);
  TempGuard guard(tmp);

  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) return fail(path, "chmod", errno);
  if (!write_all(fd.get(), contents)) return fail(path, "write", errno);
  if (::fsync(fd.get()) != 0) return fail(path, "fsync", errno);
  if (fd.close() != 0) return fail(path, "close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(path, "rename", errno);
  guard.release();

  return fsync_dir(dir);
}

Result<std::string> read_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
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
