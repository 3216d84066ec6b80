// Cross-process exclusive locks (update.lock, fleet.lock) with flock(2): the
// kernel drops the lock when the holder exits, even on kill -9, so a stale
// lock file never blocks anyone. The file records who holds it, for errors.
#pragma once

#include <chrono>
#include <filesystem>
#include <string_view>

#include "core/util/result.hpp"

namespace rch {

class FileLock {
 public:
  // Takes the lock now or fails with "<path> is held by pid N (user@host,
  // since T, purpose)". Creates parent directories (core/store/dirs: 0700,
  // trusted) and the file as needed. `held`, when given, tells a lock held by
  // someone else from a lock that could not be taken at all.
  static Result<FileLock> try_acquire(const std::filesystem::path& path, std::string_view purpose,
                                      bool* held = nullptr);
  // Retries until `timeout` has passed; the error is try_acquire's plus the wait.
  static Result<FileLock> acquire(const std::filesystem::path& path, std::string_view purpose,
                                  std::chrono::milliseconds timeout);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  // Unlocks; the file stays, since deleting it would race with a new holder
  // that already opened it.
  ~FileLock();

  const std::filesystem::path& path() const { return path_; }

 private:
  FileLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  // One attempt; `contended` tells acquire() whether waiting could help.
  static Result<FileLock> lock_once(const std::filesystem::path& path, std::string_view purpose, bool& contended);

  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace rch
