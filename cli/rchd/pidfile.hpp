// The daemon's pidfile: one live rchd per pidfile. The file holds the pid and
// is flock()ed by the daemon for its whole life, so a daemon that died
// (kill -9, crash) leaves a file nobody holds, which the next start takes over.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "core/util/result.hpp"
#include "core/util/unique_fd.hpp"

namespace rch::rchd {

class PidFile {
 public:
  // Publishes this process's pid at `path` (a complete file, by link() or
  // rename() of a locked temp file) and keeps it locked. Fails with "another
  // rchd (pid N) is running" while a live daemon holds it.
  static Result<PidFile> acquire(const std::filesystem::path& path);

  PidFile(PidFile&&) = default;
  PidFile& operator=(PidFile&&) = delete;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;
  // Removes the file (while still locked, so no starter mistakes it for a
  // stale one) and releases the lock.
  ~PidFile();

  const std::filesystem::path& path() const { return path_; }
  // The pid named by a stale file that was taken over, 0 if there was none.
  pid_t stale_pid() const { return stale_pid_; }

 private:
  PidFile(std::filesystem::path path, UniqueFd fd, pid_t stale)
      : path_(std::move(path)), fd_(std::move(fd)), stale_pid_(stale) {}

  std::filesystem::path path_;
  UniqueFd fd_;
  pid_t stale_pid_ = 0;
};

}  // namespace rch::rchd
