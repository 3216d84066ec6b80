// PidFile: the lock is on the file's inode, and the file at the path is only
// ever replaced by someone holding the lock on the inode it replaces, so two
// starters can never both believe they own the pidfile.
#include "cli/rchd/pidfile.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "core/store/dirs.hpp"

namespace rch::rchd {
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// True when `path` currently names the inode open as fd.
bool names_inode(const fs::path& path, int fd) {
  struct stat held {
  }, named{};
  return ::fstat(fd, &held) == 0 && ::lstat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}

// The pid written in an open pidfile, 0 if it holds none.
pid_t read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  long pid = std::strtol(buf, nullptr, 10);
  return pid > 0 && pid < 0x7fffffff ? static_cast<pid_t>(pid) : 0;
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// A new, locked, complete pidfile under a temporary name next to `path`.
// O_CLOEXEC keeps the lock out of jobs: a build outliving the daemon must not
// keep the next daemon from starting.
Result<UniqueFd> write_locked_temp(const fs::path& path, const fs::path& tmp) {
  UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) return make_error("cannot create " + tmp.string() + ": " + errno_text());
  const std::string text = std::to_string(::getpid()) + "\n";
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 ||
      ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp.c_str());
    return make_error("cannot write " + tmp.string() + ": " + err);
  }
  return fd;
}

}  // namespace

Result<PidFile> PidFile::acquire(const fs::path& path) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // ours from an earlier attempt of this very pid
  pid_t last_holder = 0;
  // Each round either finishes or saw the file change under it (another
  // starter is mid-way); a few seconds of rounds cover any such race.
  for (int round = 0; round < 200; ++round) {
    if (round > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    UniqueFd existing(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!existing.valid()) {
      if (errno != ENOENT) return make_error("cannot open pidfile " + path.string() + ": " + errno_text());
      // No pidfile: link() publishes ours only if there still is none.
      auto fresh = write_locked_temp(path, tmp);
      if (!fresh) return Error{fresh.error()};
      const bool linked = ::link(tmp.c_str(), path.c_str()) == 0;
      const int link_errno = errno;
      ::unlink(tmp.c_str());
      if (linked) {
        (void)fsync_dir(path.parent_path());  // best effort: the pidfile is advisory
        return PidFile(path, std::move(*fresh), 0);
      }
      if (link_errno != EEXIST) {
        return make_error("cannot create pidfile " + path.string() + ": " + std::strerror(link_errno));
      }
      continue;
    }
    if (::flock(existing.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return make_error("cannot lock pidfile " + path.string() + ": " + errno_text());
      const pid_t holder = read_pid(existing.get());
      last_holder = holder;
      // A held file naming a dead pid is a stale one being taken over right
      // now: look again once the new owner has renamed its own into place.
      if (names_inode(path, existing.get()) && alive(holder)) {
        return make_error("another rchd (pid " + std::to_string(holder) + ") is running: it holds " + path.string());
      }
      continue;
    }
    if (!names_inode(path, existing.get())) continue;  // replaced since we opened it
    // We hold the lock of the file at `path` and nobody else did: its daemon
    // is gone. Replace it while holding that lock, so a concurrent starter
    // cannot decide the same.
    const pid_t stale = read_pid(existing.get());
    auto fresh = write_locked_temp(path, tmp);
    if (!fresh) return Error{fresh.error()};
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const std::string err = errno_text();
      ::unlink(tmp.c_str());
      return make_error("cannot replace stale pidfile " + path.string() + ": " + err);
    }
    (void)fsync_dir(path.parent_path());  // best effort: the pidfile is advisory
    return PidFile(path, std::move(*fresh), stale);
  }
  return make_error("pidfile " + path.string() + " is locked by another rchd" +
                    (last_holder > 0 ? " (pid " + std::to_string(last_holder) + ")" : std::string()) +
                    " that did not finish starting");
}

PidFile::~PidFile() {
  if (!fd_.valid()) return;
  if (names_inode(path_, fd_.get())) ::unlink(path_.c_str());
}

}  // namespace rch::rchd
