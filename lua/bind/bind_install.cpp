// Module rch.install: the filesystem primitives of the local install tree
// ($RCH_HOME: versions/, current, bin/) that `rch update` needs and rch.fs
// does not offer: private temp dirs, renames (plain and exchanging), links
// replaced by one rename, lstat, readlink and tree removal. Every change
// that must survive a crash is followed by an fsync of the directory.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/store/dirs.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace fs = std::filesystem;
namespace {

std::string errno_text(int err) { return std::strerror(err); }

fs::path parent_of(const fs::path& p) {
  fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// fsync of a directory makes the names in it (renames, links) durable.
bool fsync_dir(const fs::path& dir, std::string& error) {
  auto r = rch::fsync_dir(dir);
  if (!r) error = r.error();
  return r.ok();
}

int push_true(lua_State* L) {
  lua_pushboolean(L, 1);
  return 1;
}

// mkdtemp(dir, prefix) -> path of a new private (0700) directory dir/prefixXXXXXX | nil, err
int l_install_mkdtemp(lua_State* L) {
  const std::string dir = check_std_string(L, 1);
  const std::string prefix = check_std_string(L, 2);
  if (prefix.find('/') != std::string::npos) throw Misuse("rch.install.mkdtemp: prefix cannot contain '/'");
  if (auto r = make_trusted_dirs(dir, 0755); !r) return push_failure(L, r.error());
  std::string templ = (fs::path(dir) / (prefix + "XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr)
    return push_failure(L, "cannot create a temp dir in " + dir + ": " + errno_text(errno));
  lua_pushstring(L, templ.c_str());
  return 1;
}

// rename(from, to) -> true | nil, err. One rename(2); both parents fsync'd.
int l_install_rename(lua_State* L) {
  const fs::path from = check_std_string(L, 1);
  const fs::path to = check_std_string(L, 2);
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return push_failure(L, "cannot rename " + from.string() + " to " + to.string() + ": " + errno_text(errno));
  }
  std::string error;
  if (!fsync_dir(parent_of(to), error)) return push_failure(L, error);
  if (parent_of(from) != parent_of(to) && !fsync_dir(parent_of(from), error)) return push_failure(L, error);
  return push_true(L);
}

// exchange(a, b) -> true | nil, err, unsupported. Swaps two existing paths
// atomically (renameat2 RENAME_EXCHANGE); `unsupported` is true when the
// filesystem cannot, so the caller can fall back.
int l_install_exchange(lua_State* L) {
  const fs::path a = check_std_string(L, 1);
  const fs::path b = check_std_string(L, 2);
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    lua_pushnil(L);
    lua_pushstring(L, ("cannot exchange " + a.string() + " and " + b.string() + ": " + errno_text(err)).c_str());
    lua_pushboolean(L, err == EINVAL || err == ENOSYS || err == ENOTSUP);
    return 3;
  }
  std::string error;
  if (!fsync_dir(parent_of(a), error)) return push_failure(L, error);
  if (parent_of(a) != parent_of(b) && !fsync_dir(parent_of(b), error)) return push_failure(L, error);
  return push_true(L);
}

// symlink_replace(target, link) -> true | nil, err. Makes `link` a symlink to
// `target` with one rename of a new link over it: at every moment `link` is
// either the old entry or the new link, never missing.
int l_install_symlink_replace(lua_State* L) {
  static std::atomic<unsigned> counter{0};
  const std::string target = check_std_string(L, 1);
  const fs::path link = check_std_string(L, 2);
  const fs::path tmp = parent_of(link) / (".staging-link-" + link.filename().string() + "-" +
                                          std::to_string(::getpid()) + "-" + std::to_string(counter++));
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return push_failure(L, "cannot create symlink " + tmp.string() + " -> " + target + ": " + errno_text(errno));
  }
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return push_failure(L, "cannot replace " + link.string() + " with a link to " + target + ": " + errno_text(err));
  }
  std::string error;
  if (!fsync_dir(parent_of(link), error)) return push_failure(L, error);
  return push_true(L);
}

// readlink(path) -> target | nil, err
int l_install_readlink(lua_State* L) {
  const fs::path path = check_std_string(L, 1);
  std::error_code ec;
  const fs::path target = fs::read_symlink(path, ec);
  if (ec) return push_failure(L, "cannot read link " + path.string() + ": " + ec.message());
  lua_pushstring(L, target.c_str());
  return 1;
}

// kind(path) -> "file" | "dir" | "link" | "other", or nil when absent (lstat: links not followed)
int l_install_kind(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      lua_pushnil(L);
      return 1;
    }
    return push_failure(L, "cannot stat " + path + ": " + errno_text(errno));
  }
  const char* kind = S_ISREG(st.st_mode)   ? "file"
                     : S_ISDIR(st.st_mode) ? "dir"
                     : S_ISLNK(st.st_mode) ? "link"
                                           : "other";
  lua_pushstring(L, kind);
  return 1;
}

// executable(path) -> whether path (links followed) is a regular file this user may run
int l_install_executable(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  struct stat st {};
  lua_pushboolean(L, ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0);
  return 1;
}

// chmod(path, mode) -> true | nil, err
int l_install_chmod(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  const auto mode = static_cast<mode_t>(luaL_checkinteger(L, 2));
  if (::chmod(path.c_str(), mode) != 0) return push_failure(L, "cannot chmod " + path + ": " + errno_text(errno));
  return push_true(L);
}

// remove(path) -> true | nil, err. A file or link (not followed); absent is success.
int l_install_remove(lua_State* L) {
  const fs::path path = check_std_string(L, 1);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return push_failure(L, "cannot remove " + path.string() + ": " + errno_text(errno));
  }
  return push_true(L);
}

// remove_tree(path) -> true | nil, err   (yields). Links inside are removed, not followed.
int l_install_remove_tree(lua_State* L) {
  const fs::path path = check_std_string(L, 1);
  return yield_blocking<std::string>(
      L, "rch.install.remove_tree",
      [path] {
        std::error_code ec;
        fs::remove_all(path, ec);
        return ec ? "cannot remove " + path.string() + ": " + ec.message() : std::string();
      },
      [](lua_State* co, std::string& error) { return error.empty() ? push_true(co) : push_failure(co, error); });
}

}  // namespace

int luaopen_rch_install(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"mkdtemp", guarded<l_install_mkdtemp>},
      {"rename", guarded<l_install_rename>},
      {"exchange", guarded<l_install_exchange>},
      {"symlink_replace", guarded<l_install_symlink_replace>},
      {"readlink", guarded<l_install_readlink>},
      {"kind", guarded<l_install_kind>},
      {"executable", guarded<l_install_executable>},
      {"chmod", guarded<l_install_chmod>},
      {"remove", guarded<l_install_remove>},
      {"remove_tree", guarded<l_install_remove_tree>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
