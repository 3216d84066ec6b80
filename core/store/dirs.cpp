// Directory creation with exact modes and the StrictModes-like ownership check.
#include "core/store/dirs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/util/unique_fd.hpp"
#include "core/util/user.hpp"

namespace rch {
namespace fs = std::filesystem;

namespace {

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<void> make_dirs(const fs::path& dir, mode_t mode) {
  std::vector<fs::path> missing;
  for (fs::path p = dir.lexically_normal(); !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        return make_error("cannot create " + dir.string() + ": " + p.string() + " is not a directory");
      break;
    }
    if (errno != ENOENT && errno != ENOTDIR)
      return make_error("cannot create " + dir.string() + ": " + p.string() + ": " + std::strerror(errno));
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), mode) == 0) {
      // mkdir's mode is cut by the umask; chmod's is not.
      if (::chmod(it->c_str(), mode) != 0) {
        return make_error("cannot set the mode of " + it->string() + ": " + std::strerror(errno));
      }
    } else if (errno != EEXIST) {  // made by another process meanwhile: check_trusted_dir judges it
      return make_error("cannot create " + it->string() + ": " + std::strerror(errno));
    }
  }
  return {};
}

namespace {

// The rule itself, over `resolved` (a canonical path) and its parents.
// `child_will_be_ours`: rch is about to create the next component itself, so
// `resolved` may be a sticky, world-writable parent like /tmp.
Result<void> check_components(const fs::path& resolved, const std::string& shown, bool child_will_be_ours) {
  const uid_t me = ::geteuid();
  std::vector<fs::path> chain;  // resolved, its parent, …, "/"
  for (fs::path p = resolved;; p = p.parent_path()) {
    chain.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (std::size_t i = chain.size(); i-- > 0;) {
    const fs::path& p = chain[i];
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return make_error("cannot check " + p.string() + ": " + std::strerror(errno));
    if (st.st_uid != me && st.st_uid != 0) {
      return make_error("refusing to use " + shown + ": " + p.string() + " is owned by " + user_name(st.st_uid) +
                        ", not by " + (me == 0 ? std::string("root") : user_name(me) + " or root") +
                        ", who could replace what rch writes there; fix: chown " + user_name(me) + " " + p.string() +
                        ", or choose a directory of your own");
    }
    if ((st.st_mode & 022) == 0) continue;
    // A sticky dir lets nobody but the owner rename or remove an entry, so
    // like /tmp it is fine above a component whose own check follows.
    if ((st.st_mode & S_ISVTX) != 0 && (st.st_mode & 002) != 0 && (i > 0 || child_will_be_ours)) continue;
    return make_error("refusing to use " + shown + ": " + p.string() + " is writable by " +
                      ((st.st_mode & 002) != 0 ? "others" : "its group") + " (mode " + octal(st.st_mode) +
                      "), who could replace what rch writes there; fix: chmod go-w " + p.string());
  }
  return {};
}

}  // namespace

Result<void> check_trusted_dir(const fs::path& dir) {
  std::error_code ec;
  const fs::path resolved = fs::canonical(dir, ec);
  if (ec) return make_error("cannot resolve " + dir.string() + ": " + ec.message());
  return check_components(resolved, resolved == dir ? dir.string() : dir.string() + " (" + resolved.string() + ")",
                          false);
}

Result<void> make_trusted_dirs(const fs::path& dir, mode_t mode) {
  // The nearest existing ancestor first, so nothing is created under a
  // directory that fails the rule.
  fs::path existing = fs::absolute(dir).lexically_normal();
  std::error_code ec;
  while (!fs::exists(existing, ec) && existing != existing.parent_path()) existing = existing.parent_path();
  if (existing != fs::absolute(dir).lexically_normal()) {
    const fs::path resolved = fs::canonical(existing, ec);
    if (ec) return make_error("cannot resolve " + existing.string() + ": " + ec.message());
    if (auto r = check_components(resolved, dir.string(), true); !r) return r;
  }
  if (auto r = make_dirs(dir, mode); !r) return r;
  return check_trusted_dir(dir);
}

Result<void> fsync_dir(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? "." : dir;
  UniqueFd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return make_error("cannot open directory " + d.string() + ": " + std::strerror(errno));
  if (::fsync(fd.get()) != 0 && errno != EINVAL) {
    return make_error("cannot fsync directory " + d.string() + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace rch
