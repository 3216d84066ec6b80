// Module rch.install: core/store/install_tree's primitives of the local
// install tree ($RCH_HOME: versions/, current, bin/) for `rch update`.
#include "core/store/install_tree.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace fs = std::filesystem;
namespace {

int push_result(lua_State* L, const Result<void>& r) {
  if (!r) return push_failure(L, r.error());
  lua_pushboolean(L, 1);
  return 1;
}

// mkdtemp(dir, prefix) -> path of a new private (0700) directory dir/prefixXXXXXX | nil, err
int l_install_mkdtemp(lua_State* L) {
  const std::string prefix = check_std_string(L, 2);
  if (prefix.find('/') != std::string::npos) throw Misuse("rch.install.mkdtemp: prefix cannot contain '/'");
  auto dir = make_private_temp_dir(check_std_string(L, 1), prefix);
  if (!dir) return push_failure(L, dir.error());
  lua_pushstring(L, dir->c_str());
  return 1;
}

// rename(from, to) -> true | nil, err. One rename(2); both parents fsync'd.
int l_install_rename(lua_State* L) {
  return push_result(L, rename_durable(check_std_string(L, 1), check_std_string(L, 2)));
}

// exchange(a, b) -> true | nil, err, unsupported (the filesystem cannot: fall back)
int l_install_exchange(lua_State* L) {
  bool unsupported = false;
  auto r = exchange_paths(check_std_string(L, 1), check_std_string(L, 2), &unsupported);
  if (r) return push_result(L, r);
  lua_pushnil(L);
  lua_pushstring(L, r.error().c_str());
  lua_pushboolean(L, unsupported);
  return 3;
}

// symlink_replace(target, link) -> true | nil, err: link never missing meanwhile
int l_install_symlink_replace(lua_State* L) {
  return push_result(L, replace_symlink(check_std_string(L, 1), check_std_string(L, 2)));
}

// readlink(path) -> target | nil, err
int l_install_readlink(lua_State* L) {
  auto target = read_link(check_std_string(L, 1));
  if (!target) return push_failure(L, target.error());
  lua_pushstring(L, target->c_str());
  return 1;
}

// kind(path) -> "file" | "dir" | "link" | "other", or nil when absent (lstat: links not followed)
int l_install_kind(lua_State* L) {
  auto kind = path_kind(check_std_string(L, 1));
  if (!kind) return push_failure(L, kind.error());
  if (!kind->has_value()) {
    lua_pushnil(L);
  } else {
    lua_pushstring(L, to_string(**kind));
  }
  return 1;
}

// executable(path) -> whether path (links followed) is a regular file this user may run
int l_install_executable(lua_State* L) {
  lua_pushboolean(L, is_executable(check_std_string(L, 1)));
  return 1;
}

// chmod(path, mode) -> true | nil, err
int l_install_chmod(lua_State* L) {
  return push_result(L, change_mode(check_std_string(L, 1), static_cast<mode_t>(luaL_checkinteger(L, 2))));
}

// remove(path) -> true | nil, err. A file or link (not followed); absent is success.
int l_install_remove(lua_State* L) { return push_result(L, remove_file(check_std_string(L, 1))); }

// remove_tree(path) -> true | nil, err   (yields). Links inside are removed, not followed.
int l_install_remove_tree(lua_State* L) {
  const fs::path path = check_std_string(L, 1);
  return yield_blocking<Result<void>>(
      L, "rch.install.remove_tree", [path] { return remove_tree(path); },
      [](lua_State* co, Result<void>& r) { return push_result(co, r); });
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
