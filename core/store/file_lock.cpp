// FileLock: flock locks belong to an open file description, so a second
// open() of the same file is refused even inside one process, and a child
// inherits nothing past exec (O_CLOEXEC).
#include "core/store/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "core/store/dirs.hpp"
#include "core/util/time.hpp"
#include "core/util/user.hpp"

namespace rch {
namespace {

// The holder line must stay one line and keep its key=value shape.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::string holder_line(std::string_view purpose) {
  return "pid=" + std::to_string(::getpid()) + " user=" + one_line(current_user_name()) +
         " host=" + one_line(host_name()) + " since=" + iso8601_utc_now() + " purpose=" + one_line(purpose) + "\n";
}

// "pid=1 user=u host=h since=t purpose=free text" → fields; purpose takes the
// rest of the line since it may contain spaces.
std::map<std::string, std::string> parse_holder(std::string_view line) {
  std::map<std::string, std::string> f;
  if (const auto nl = line.find('\n'); nl != std::string_view::npos) line = line.substr(0, nl);
  while (!line.empty()) {
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) break;
    const std::string key(line.substr(0, eq));
    line.remove_prefix(eq + 1);
    const auto sp = key == "purpose" ? std::string_view::npos : line.find(' ');
    f[key] = std::string(line.substr(0, sp));
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  }
  return f;
}

std::string describe_holder(int fd, const std::filesystem::path& path) {
  char buf[1024];
  ssize_t n;
  while ((n = ::pread(fd, buf, sizeof buf - 1, 0)) < 0 && errno == EINTR) {
  }
  const auto f = parse_holder(std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
  const auto get = [&](const char* k) {
    const auto it = f.find(k);
    return it == f.end() ? std::string() : it->second;
  };
  // Empty right after the holder's flock and before its write: say less, not wrong.
  if (get("pid").empty()) return path.string() + " is held by another process";
  std::string who = get("user") + "@" + get("host");
  std::string msg = path.string() + " is held by pid " + get("pid") + " (" + who;
  if (!get("since").empty()) msg += ", since " + get("since");
  if (!get("purpose").empty()) msg += ", " + get("purpose");
  return msg + ")";
}

}  // namespace

Result<FileLock> FileLock::try_acquire(const std::filesystem::path& path, std::string_view purpose, bool* held) {
  bool contended = false;
  auto lock = lock_once(path, purpose, contended);
  if (held != nullptr) *held = contended;
  return lock;
}

Result<FileLock> FileLock::lock_once(const std::filesystem::path& path, std::string_view purpose, bool& contended) {
  contended = false;
  if (path.has_parent_path()) {
    if (auto r = make_trusted_dirs(path.parent_path(), 0700); !r)
      return make_error("cannot lock " + path.string() + ": " + r.error());
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("cannot lock " + path.string() + ": " + std::strerror(errno));
  FileLock lock(fd, path);  // closes fd on every return below that is not success
  int rc;
  while ((rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    if (errno == EWOULDBLOCK) {
      contended = true;
      return make_error(describe_holder(fd, path));
    }
    return make_error("cannot lock " + path.string() + ": " + std::strerror(errno));
  }
  const std::string info = holder_line(purpose);
  // Holder info is a courtesy for error messages: the lock is already ours,
  // so failing to record it is not worth failing the caller.
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, info.data(), info.size(), 0);
  return lock;
}

Result<FileLock> FileLock::acquire(const std::filesystem::path& path, std::string_view purpose,
                                   std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    bool contended = false;
    auto r = lock_once(path, purpose, contended);
    // Only contention is worth waiting out; a permission error will not go away.
    if (r.ok() || !contended) return r;
    const auto now = clock::now();
    if (now >= deadline) {
      return make_error(r.error() + "; gave up after " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::min<clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ < 0) return;
  // Explicit unlock: a forked child sharing this descriptor must not keep the lock.
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

}  // namespace rch
