// JsonlWriter: appends hold flock(LOCK_EX) on the journal itself, so two rch
// processes appending to one audit log never interleave, and a failed partial
// write can be truncated away before anyone appends after it.
#include "core/store/jsonl.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "core/store/atomic_file.hpp"
#include "core/store/dirs.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

Error fail(const std::filesystem::path& path, const char* step, int err) {
  return make_error("cannot append to " + path.string() + ": " + step + ": " + std::strerror(err));
}

// Holds LOCK_EX for one append (or the open-time repair, or a rotation).
class FlockGuard {
 public:
  explicit FlockGuard(int fd) { lock(fd); }
  FlockGuard(const FlockGuard&) = delete;
  FlockGuard& operator=(const FlockGuard&) = delete;
  ~FlockGuard() { unlock(); }
  bool ok() const { return rc_ == 0; }
  // Moves the lock to another fd (locking it before letting go of the old one).
  void move_to(int fd) {
    const int old = fd_;
    const bool held = rc_ == 0;
    lock(fd);
    if (held) ::flock(old, LOCK_UN);
  }

 private:
  void lock(int fd) {
    fd_ = fd;
    while ((rc_ = ::flock(fd_, LOCK_EX)) != 0 && errno == EINTR) {
    }
  }
  void unlock() {
    if (rc_ == 0) ::flock(fd_, LOCK_UN);
    rc_ = -1;
  }
  int fd_ = -1;
  int rc_ = -1;
};

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Opens (creating) the file now at `path`, takes its lock, then lets go of the
// old `fd` and its lock: the step after a rotation, ours or another process's.
Result<void> lock_fresh_file(int& fd, const std::filesystem::path& path, FlockGuard& lock, const char* step) {
  const int fresh = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fresh < 0) return fail(path, step, errno);
  lock.move_to(fresh);
  ::close(fd);
  fd = fresh;
  if (!lock.ok()) return fail(path, "flock", errno);
  return {};
}

// With the lock held on `fd`: while `fd` is no longer the file at `path`
// (another process rotated it away), reopen `path` and hold its lock instead.
Result<void> follow_rotation(int& fd, const std::filesystem::path& path, FlockGuard& lock) {
  for (int tries = 0; tries < 100; ++tries) {
    struct stat mine {
    }, now{};
    if (::fstat(fd, &mine) != 0) return fail(path, "fstat", errno);
    if (::stat(path.c_str(), &now) == 0 && same_file(mine, now)) return {};
    if (auto r = lock_fresh_file(fd, path, lock, "reopen after a rotation"); !r) return r;
  }
  return make_error("cannot append to " + path.string() + ": it keeps being rotated away");
}

// Best effort: the appended bytes are already durable; this is for a new file's name.
void fsync_parent(const std::filesystem::path& path) { (void)fsync_dir(path.parent_path()); }

// Cuts the file back to just after its last '\n' if it ends mid-line.
Result<void> drop_torn_tail(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(path, "fstat", errno);
  off_t end = st.st_size;
  if (end == 0) return {};
  // The fd is O_WRONLY|O_APPEND, so the tail is read through a second one.
  const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) return fail(path, "open for repair", errno);
  char buf[4096];
  off_t keep = -1;
  while (end > 0 && keep < 0) {
    const off_t start = end > static_cast<off_t>(sizeof buf) ? end - static_cast<off_t>(sizeof buf) : 0;
    const ssize_t n = ::pread(rfd, buf, static_cast<std::size_t>(end - start), start);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(rfd);
      return fail(path, "read for repair", err);
    }
    if (n == 0) break;
    for (ssize_t i = n; i > 0; --i) {
      if (buf[i - 1] == '\n') {
        keep = start + i;
        break;
      }
    }
    end = start;
  }
  ::close(rfd);
  if (keep < 0) keep = 0;  // no newline at all: the whole file is one torn line
  if (keep == st.st_size) return {};
  if (::ftruncate(fd, keep) != 0) return fail(path, "truncate torn line", errno);
  if (::fsync(fd) != 0) return fail(path, "fsync", errno);
  return {};
}

}  // namespace

Result<JsonlWriter> JsonlWriter::open(const std::filesystem::path& path) {
  if (path.has_parent_path()) {
    if (auto r = make_trusted_dirs(path.parent_path(), 0700); !r) return Error{r.error()};
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("cannot open " + path.string() + ": " + std::strerror(errno));
  JsonlWriter writer(fd, path);
  {
    FlockGuard lock(fd);
    if (!lock.ok()) return fail(path, "flock", errno);
    if (auto r = drop_torn_tail(fd, path); !r) return Error{r.error()};
  }
  // A new file's directory entry must be durable too, or the journal can vanish.
  fsync_parent(path);
  return writer;
}

JsonlWriter::JsonlWriter(JsonlWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

JsonlWriter& JsonlWriter::operator=(JsonlWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

JsonlWriter::~JsonlWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> JsonlWriter::append(std::string_view line) {
  if (line.find('\n') != std::string_view::npos) {
    return make_error("cannot append to " + path_.string() + ": line contains a newline");
  }
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line);
  buf += '\n';
  return write_locked(buf);
}

Result<void> JsonlWriter::append_batch(const std::vector<std::string>& lines) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find('\n') != std::string::npos) {
      return make_error("cannot append to " + path_.string() + ": line " + std::to_string(i + 1) +
                        " of the batch contains a newline");
    }
    total += lines[i].size() + 1;
  }
  if (lines.empty()) return {};
  std::string buf;
  buf.reserve(total);
  for (const auto& l : lines) {
    buf.append(l);
    buf += '\n';
  }
  return write_locked(buf);
}

Result<void> JsonlWriter::append_batch_linked(const std::vector<std::string>& lines, const Linker& link,
                                              const AfterWrite& written) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find('\n') != std::string::npos) {
      return make_error("cannot append to " + path_.string() + ": line " + std::to_string(i + 1) +
                        " of the batch contains a newline");
    }
  }
  if (lines.empty()) return {};
  std::string previous;
  return write_locked(
      {},
      [&]() -> Result<std::string> {
        auto last = read_last_jsonl_line(path_);
        if (!last) return Error{last.error()};
        // Just rotated: the chain goes on from the last line of path.1.
        if (last->empty()) last = read_last_jsonl_line(rotated_path(path_, 1));
        if (!last) return Error{last.error()};
        previous = std::move(*last);
        std::string buf;
        for (const auto& line : lines) {
          previous = link(previous, line);
          buf += previous;
          buf += '\n';
        }
        return buf;
      },
      [&]() -> Result<void> { return written ? written(previous) : Result<void>(); });
}

Result<void> JsonlWriter::write_locked(std::string_view bytes, const std::function<Result<std::string>()>& compose,
                                       const std::function<Result<void>()>& after) {
  if (fd_ < 0) throw std::logic_error("JsonlWriter used after move");
  FlockGuard lock(fd_);
  if (!lock.ok()) return fail(path_, "flock", errno);
  if (auto r = follow_rotation(fd_, path_, lock); !r) return r;
  std::string composed;
  if (compose) {
    auto r = compose();
    if (!r) return Error{r.error()};
    composed = std::move(*r);
    bytes = composed;
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return fail(path_, "fstat", errno);
  std::string_view rest = bytes;
  while (!rest.empty()) {
    // One write(2) in practice; the loop only continues a short write.
    const ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      // Remove the partial line, so the next append starts on a clean line.
      if (rest.size() != bytes.size()) (void)::ftruncate(fd_, st.st_size);
      return fail(path_, "write", err);
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd_) != 0) return fail(path_, "fsync", errno);
  return after ? after() : Result<void>();
}

Result<JsonlWriter::Rotated> JsonlWriter::rotate_if_larger(std::uint64_t max_bytes, int keep_files) {
  if (fd_ < 0) throw std::logic_error("JsonlWriter used after move");
  Rotated out;
  if (max_bytes == 0 || keep_files < 1) return out;
  FlockGuard lock(fd_);
  if (!lock.ok()) return fail(path_, "flock", errno);
  if (auto r = follow_rotation(fd_, path_, lock); !r) return Error{r.error()};
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return fail(path_, "fstat", errno);
  if (static_cast<std::uint64_t>(st.st_size) < max_bytes) return out;
  std::error_code ec;
  // path.keep_files (and any older leftovers) would fall off the end.
  for (int n = keep_files; std::filesystem::exists(rotated_path(path_, n), ec); ++n) {
    if (::unlink(rotated_path(path_, n).c_str()) != 0) return fail(rotated_path(path_, n), "remove", errno);
    out.removed.push_back(rotated_path(path_, n));
  }
  for (int n = keep_files - 1; n >= 1; --n) {
    if (::rename(rotated_path(path_, n).c_str(), rotated_path(path_, n + 1).c_str()) != 0 && errno != ENOENT) {
      return fail(rotated_path(path_, n), "rotate", errno);
    }
  }
  if (::rename(path_.c_str(), rotated_path(path_, 1).c_str()) != 0) return fail(path_, "rotate", errno);
  if (auto r = lock_fresh_file(fd_, path_, lock, "create after rotation"); !r) return Error{r.error()};
  fsync_parent(path_);
  out.rotated = true;
  return out;
}

std::filesystem::path rotated_path(const std::filesystem::path& path, int n) {
  std::filesystem::path p = path;
  p += "." + std::to_string(n);
  return p;
}

Result<std::vector<std::string>> read_jsonl_lines(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return Error{text.error()};
  std::vector<std::string> lines;
  std::string_view rest = *text;
  for (std::size_t eol; (eol = rest.find('\n')) != std::string_view::npos;) {
    lines.emplace_back(rest.substr(0, eol));
    rest.remove_prefix(eol + 1);
  }
  return lines;
}

Result<std::size_t> for_each_jsonl_line(const std::filesystem::path& path,
                                        const std::function<void(std::string_view)>& fn) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error{"cannot read " + path.string() + ": " + std::strerror(errno)};
  std::string pending;  // the start of a line whose newline is in a later block
  std::vector<char> block(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd.get(), block.data(), block.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{"cannot read " + path.string() + ": " + std::strerror(errno)};
    }
    if (n == 0) break;
    std::string_view rest(block.data(), static_cast<std::size_t>(n));
    for (std::size_t eol; (eol = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(eol + 1)) {
      if (pending.empty()) {
        fn(rest.substr(0, eol));
      } else {
        pending.append(rest.substr(0, eol));
        fn(pending);
        pending.clear();
      }
    }
    pending.append(rest);
  }
  return pending.size();
}

Result<std::string> read_last_jsonl_line(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();
    return Error{"cannot open " + path.string() + ": " + std::strerror(errno)};
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error{"cannot stat " + path.string() + ": " + std::strerror(errno)};
  // Walk back in blocks until the newline before the last complete line.
  std::string tail;
  off_t end = st.st_size;
  constexpr off_t kBlock = 4096;
  while (end > 0) {
    const off_t start = end > kBlock ? end - kBlock : 0;
    std::string block(static_cast<std::size_t>(end - start), '\0');
    if (::pread(fd, block.data(), block.size(), start) != static_cast<ssize_t>(block.size())) {
      return Error{"cannot read " + path.string() + ": " + std::strerror(errno)};
    }
    tail = block + tail;
    end = start;
    const std::size_t last_nl = tail.rfind('\n');
    if (last_nl == std::string::npos) continue;  // torn tail only so far
    const std::size_t prev_nl = last_nl == 0 ? std::string::npos : tail.rfind('\n', last_nl - 1);
    if (prev_nl != std::string::npos) return tail.substr(prev_nl + 1, last_nl - prev_nl - 1);
    if (end == 0) return tail.substr(0, last_nl);
  }
  return std::string();
}

}  // namespace rch
