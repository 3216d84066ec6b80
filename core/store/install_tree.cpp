// The install tree's primitives: each a syscall or two, with the directory
// fsync that makes a rename or a new link durable.
#include "core/store/install_tree.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/store/dirs.hpp"

namespace rch {
namespace fs = std::filesystem;
namespace {

std::string errno_text(int err) { return std::strerror(err); }

fs::path parent_of(const fs::path& p) {
  fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// fsyncs the parents of both names (once when they are the same directory).
Result<void> fsync_parents(const fs::path& a, const fs::path& b) {
  if (auto r = fsync_dir(parent_of(a)); !r) return r;
  if (parent_of(a) != parent_of(b)) return fsync_dir(parent_of(b));
  return {};
}

}  // namespace

Result<fs::path> make_private_temp_dir(const fs::path& dir, const std::string& prefix) {
  if (prefix.find('/') != std::string::npos) return make_error("temp dir prefix '" + prefix + "' contains '/'");
  if (auto r = make_trusted_dirs(dir, 0755); !r) return Error{r.error()};
  std::string templ = (dir / (prefix + "XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return make_error("cannot create a temp dir in " + dir.string() + ": " + errno_text(errno));
  }
  return fs::path(templ);
}

Result<void> rename_durable(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return make_error("cannot rename " + from.string() + " to " + to.string() + ": " + errno_text(errno));
  }
  return fsync_parents(to, from);
}

Result<void> exchange_paths(const fs::path& a, const fs::path& b, bool* unsupported) {
  *unsupported = false;
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    *unsupported = err == EINVAL || err == ENOSYS || err == ENOTSUP;
    return make_error("cannot exchange " + a.string() + " and " + b.string() + ": " + errno_text(err));
  }
  return fsync_parents(a, b);
}

Result<void> replace_symlink(const std::string& target, const fs::path& link) {
  static std::atomic<unsigned> counter{0};
  const fs::path tmp = parent_of(link) / (".staging-link-" + link.filename().string() + "-" +
                                          std::to_string(::getpid()) + "-" + std::to_string(counter++));
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return make_error("cannot create symlink " + tmp.string() + " -> " + target + ": " + errno_text(errno));
  }
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return make_error("cannot replace " + link.string() + " with a link to " + target + ": " + errno_text(err));
  }
  return fsync_dir(parent_of(link));
}

Result<std::string> read_link(const fs::path& link) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(link, ec);
  if (ec) return make_error("cannot read link " + link.string() + ": " + ec.message());
  return target.string();
}

Result<std::optional<PathKind>> path_kind(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<PathKind>();
    return make_error("cannot stat " + path.string() + ": " + errno_text(errno));
  }
  if (S_ISREG(st.st_mode)) return std::optional<PathKind>(PathKind::file);
  if (S_ISDIR(st.st_mode)) return std::optional<PathKind>(PathKind::dir);
  if (S_ISLNK(st.st_mode)) return std::optional<PathKind>(PathKind::link);
  return std::optional<PathKind>(PathKind::other);
}

const char* to_string(PathKind kind) {
  switch (kind) {
    case PathKind::file:
      return "file";
    case PathKind::dir:
      return "dir";
    case PathKind::link:
      return "link";
    case PathKind::other:
      break;
  }
  return "other";
}

bool is_executable(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

Result<void> change_mode(const fs::path& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0) return make_error("cannot chmod " + path.string() + ": " + errno_text(errno));
  return {};
}

Result<void> remove_file(const fs::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return make_error("cannot remove " + path.string() + ": " + errno_text(errno));
  }
  return {};
}

Result<void> remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return make_error("cannot remove " + path.string() + ": " + ec.message());
  return {};
}

}  // namespace rch
