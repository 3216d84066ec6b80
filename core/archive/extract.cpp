// Release tarball extraction. libarchive only parses; every file and
// directory is created here with *at() calls relative to directory fds opened
// with O_NOFOLLOW, one component at a time, so neither a crafted entry nor a
// symlink already present under dest_dir can make us write elsewhere
// (archive_write_disk resolves paths itself and would follow such links).
#include "core/archive/extract.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kBlock = 64 * 1024;

struct ArchiveDeleter {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

const char* archive_message(archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

std::string join(const std::vector<std::string>& parts, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    if (i) out += '/';
    out += parts[i];
  }
  return out;
}

// Splits an entry name into its components ("." and empty ones dropped), or
// says why the name is refused. An empty vector is dest_dir itself.
std::optional<std::string> split_name(std::string_view name, std::vector<std::string>& parts) {
  parts.clear();
  if (name.empty()) return "empty name";
  if (name.front() == '/') return "absolute path";
  while (!name.empty()) {
    std::size_t slash = name.find('/');
    std::string_view part = name.substr(0, slash);
    if (part == "..") return "path escapes the extraction directory";
    if (!part.empty() && part != ".") parts.emplace_back(part);
    name.remove_prefix(slash == std::string_view::npos ? name.size() : slash + 1);
  }
  return std::nullopt;
}

const char* forbidden_type(mode_t type) {
  switch (type) {
    case AE_IFLNK:
      return "symbolic links are not allowed";
    case AE_IFCHR:
      return "character devices are not allowed";
    case AE_IFBLK:
      return "block devices are not allowed";
    case AE_IFIFO:
      return "fifos are not allowed";
    case AE_IFSOCK:
      return "sockets are not allowed";
    default:
      return "only regular files and directories are allowed";
  }
}

class Extractor {
 public:
  Extractor(const fs::path& archive_path, const fs::path& dest, const ExtractLimits& limits)
      : archive_path_(archive_path), archive_name_(archive_path.filename().string()), dest_(dest), limits_(limits) {}

  Result<std::vector<std::string>> run() {
    auto r = extract();
    if (!r) rollback();
    return r;
  }

 private:
  struct Created {
    std::vector<std::string> parts;
    bool dir;
  };

  Error refuse(std::string_view entry, std::string_view why) const {
    return make_error("refusing entry '" + std::string(entry) + "' in " + archive_name_ + ": " + std::string(why));
  }

  Error errno_error(std::string_view entry, std::string_view what, int err) const {
    return make_error("cannot extract entry '" + std::string(entry) + "' of " + archive_name_ + ": " +
                      std::string(what) + ": " + std::strerror(err));
  }

  // Opens the directory made of the first `depth` components, creating the
  // missing ones when `create`. Never follows a symlink on the way.
  Result<UniqueFd> open_dir(std::string_view entry, const std::vector<std::string>& parts, std::size_t depth,
                            bool create) {
    UniqueFd cur(::open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cur.get() < 0) return errno_error(entry, "cannot open " + dest_.string(), errno);
    for (std::size_t i = 0; i < depth; ++i) {
      const char* name = parts[i].c_str();
      const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      UniqueFd next(::openat(cur.get(), name, flags));
      if (next.get() < 0 && errno == ENOENT && create) {
        const bool made = ::mkdirat(cur.get(), name, 0700) == 0;
        if (!made && errno != EEXIST)
          return errno_error(entry, "cannot create directory '" + join(parts, i + 1) + "'", errno);
        if (made) {
          created_.push_back({{parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(i) + 1}, true});
          created_dirs_.insert(join(parts, i + 1));
        }
        next = UniqueFd(::openat(cur.get(), name, flags));
        // mkdir's mode is cut by the umask; fchmod is not.
        if (made && next.get() >= 0 && ::fchmod(next.get(), 0755) != 0)
          return errno_error(entry, "cannot chmod '" + join(parts, i + 1) + "'", errno);
      }
      if (next.get() < 0) {
        const int err = errno;
        const std::string at = "'" + join(parts, i + 1) + "' in the extraction directory";
        // O_DIRECTORY|O_NOFOLLOW fails on a symlink with ENOTDIR (or ELOOP):
        // look again to say which it is.
        struct stat st {};
        if ((err == ENOTDIR || err == ELOOP) && ::fstatat(cur.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0)
          return refuse(entry, at + (S_ISLNK(st.st_mode) ? " is a symbolic link" : " is not a directory"));
        return errno_error(entry, "cannot open " + at, err);
      }
      cur = std::move(next);
    }
    return cur;
  }

  Result<void> write_file(archive* a, std::string_view entry, const std::vector<std::string>& parts, mode_t perm,
                          std::uint64_t declared) {
    auto parent = open_dir(entry, parts, parts.size() - 1, true);
    if (!parent) return Error{parent.error()};
    UniqueFd dir = std::move(parent).value();
    const char* leaf = parts.back().c_str();
    // O_EXCL refuses anything already there, a symlink included.
    UniqueFd out(::openat(dir.get(), leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (out.get() < 0) {
      if (errno == EEXIST)
        return refuse(entry, "'" + join(parts, parts.size()) + "' already exists in the extraction directory");
      return errno_error(entry, "cannot create the file", errno);
    }
    created_.push_back({parts, false});

    std::uint64_t written = 0;
    std::vector<char> buf(kBlock);
    for (;;) {
      la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
      if (n == 0) break;
      if (n < 0)
        return make_error("cannot read entry '" + std::string(entry) + "' of " + archive_name_ + ": " +
                          archive_message(a));
      written += static_cast<std::uint64_t>(n);
      // The declared size was checked; this catches data beyond it (sparse
      // maps, lying headers).
      if (written > declared || total_ + written > limits_.max_total_bytes)
        return refuse(entry, "archive holds more than " + std::to_string(limits_.max_total_bytes) + " bytes");
      const char* p = buf.data();
      std::size_t left = static_cast<std::size_t>(n);
      while (left > 0) {
        ssize_t w = ::write(out.get(), p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_error(entry, "cannot write", errno);
        p += w;
        left -= static_cast<std::size_t>(w);
      }
    }
    total_ += written;
    if (::fchmod(out.get(), perm) != 0) return errno_error(entry, "cannot chmod", errno);
    // The installer renames these into place next; they must be on disk first.
    if (::fsync(out.get()) != 0) return errno_error(entry, "cannot fsync", errno);
    if (::close(out.release()) != 0) return errno_error(entry, "cannot close", errno);
    return {};
  }

  Result<std::vector<std::string>> extract() {
    struct stat st {};
    if (::stat(dest_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return make_error("cannot extract " + archive_name_ + ": " + dest_.string() + " is not a directory");

    ArchivePtr owner(archive_read_new());
    if (!owner) return make_error("cannot extract " + archive_name_ + ": out of memory");
    archive* a = owner.get();
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, archive_path_.c_str(), kBlock) != ARCHIVE_OK)
      return make_error("cannot open archive " + archive_path_.string() + ": " + archive_message(a));

    std::vector<std::string> files;
    std::set<std::string> seen;
    std::vector<std::pair<std::vector<std::string>, mode_t>> dir_modes;
    std::vector<std::string> parts;
    std::string last = "(start)";
    std::size_t entries = 0;
    for (;;) {
      archive_entry* e = nullptr;
      int rc = archive_read_next_header(a, &e);
      if (rc == ARCHIVE_EOF) break;
      // ARCHIVE_RETRY too: libarchive resyncs past damage, and we do not
      // extract what follows damage.
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
        return make_error("cannot read " + archive_name_ + " after entry '" + last + "': " + archive_message(a));

      const char* raw = archive_entry_pathname(e);
      if (!raw) raw = archive_entry_pathname_utf8(e);
      if (!raw) return make_error("refusing an entry after '" + last + "' in " + archive_name_ + ": unreadable name");
      const std::string name = raw;
      last = name;

      if (++entries > limits_.max_entries)
        return refuse(name, "archive has more than " + std::to_string(limits_.max_entries) + " entries");
      // A hardlink entry may carry the type of its target: check it first.
      if (const char* target = archive_entry_hardlink(e))
        return refuse(name, "hard links are not allowed (to '" + std::string(target) + "')");
      const mode_t type = archive_entry_filetype(e);
      if (type == AE_IFLNK) {
        const char* target = archive_entry_symlink(e);
        return refuse(name, std::string(forbidden_type(type)) + " (to '" + (target ? target : "") + "')");
      }
      if (type != AE_IFREG && type != AE_IFDIR) return refuse(name, forbidden_type(type));
      if (auto why = split_name(name, parts)) return refuse(name, *why);
      if (parts.empty()) {
        if (type == AE_IFDIR) continue;  // "./" is dest_dir itself
        return refuse(name, "empty name");
      }
      if (!seen.insert(join(parts, parts.size())).second) return refuse(name, "duplicate entry");
      const mode_t perm = archive_entry_perm(e) & 0755;

      if (type == AE_IFDIR) {
        if (auto dir = open_dir(name, parts, parts.size(), true); !dir) return Error{dir.error()};
        // Applied at the end, so a read-only directory can still be filled;
        // a directory that was there before keeps its mode.
        if (created_dirs_.count(join(parts, parts.size()))) dir_modes.emplace_back(parts, perm);
        continue;
      }

      const std::uint64_t budget = limits_.max_total_bytes - total_;
      const std::uint64_t declared =
          archive_entry_size_is_set(e) ? static_cast<std::uint64_t>(archive_entry_size(e)) : budget;
      if (declared > budget)
        return refuse(name, "archive holds more than " + std::to_string(limits_.max_total_bytes) + " bytes");
      if (auto w = write_file(a, name, parts, perm, declared); !w) return Error{w.error()};
      files.push_back(join(parts, parts.size()));
    }

    // Deepest first, so a parent losing its x bit does not block its children.
    std::stable_sort(dir_modes.begin(), dir_modes.end(),
                     [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
    for (const auto& [dir_parts, perm] : dir_modes) {
      const std::string name = join(dir_parts, dir_parts.size());
      auto dir = open_dir(name, dir_parts, dir_parts.size(), false);
      if (!dir) return Error{dir.error()};
      if (::fchmod(dir->get(), perm) != 0) return errno_error(name, "cannot chmod", errno);
    }
    return files;
  }

  // Best effort: removes what this call created, newest first.
  void rollback() {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
      auto parent = open_dir("", it->parts, it->parts.size() - 1, false);
      if (!parent) continue;
      ::unlinkat(parent->get(), it->parts.back().c_str(), it->dir ? AT_REMOVEDIR : 0);
    }
    created_.clear();
  }

  fs::path archive_path_;
  std::string archive_name_;
  fs::path dest_;
  ExtractLimits limits_;
  std::uint64_t total_ = 0;
  std::vector<Created> created_;
  std::set<std::string> created_dirs_;
};

}  // namespace

Result<std::vector<std::string>> extract_tar_gz_safely(const fs::path& archive, const fs::path& dest_dir,
                                                       const ExtractLimits& limits) {
  return Extractor(archive, dest_dir, limits).run();
}

}  // namespace rch
