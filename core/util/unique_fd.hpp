// UniqueFd: the one owner of a file descriptor (files, directories, sockets,
// pipes, locks, the signalfd), closed when the owner goes away.
#pragma once

#include <unistd.h>

#include <utility>

namespace rch {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // close(2) can report a deferred write error (NFS): for files whose bytes matter.
  int close() { return ::close(release()); }

 private:
  int fd_ = -1;
};

}  // namespace rch
