// Module rch.fs: local files for the engine (state, plans, scripts). Writes
// are atomic; appends to journals go through rch.store, not here.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/config/paths.hpp"
#include "core/store/atomic_file.hpp"
#include "core/store/dirs.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace fs = std::filesystem;
namespace {

// read(path) -> contents | nil, err
int l_fs_read(lua_State* L) {
  auto r = read_file(check_std_string(L, 1));
  if (!r.ok()) return push_failure(L, r.error());
  lua_pushlstring(L, r.value().data(), r.value().size());
  return 1;
}

// write_atomic(path, contents [, mode]) -> true | nil, err
int l_fs_write_atomic(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  const std::string contents = check_std_string(L, 2);
  const auto mode = static_cast<unsigned>(luaL_optinteger(L, 3, 0644));
  auto r = write_file_atomic(path, contents, mode);
  if (!r.ok()) return push_failure(L, r.error());
  lua_pushboolean(L, 1);
  return 1;
}

// write_json_atomic(path, value [, mode = 0644]) -> true | nil, err: value as
// rch.json.encode(value, {pretty = true}) .. "\n", written as write_atomic
// does, without the document ever being a Lua string (result.json of 100k
// workers is tens of MB, and each Lua copy of it one more).
int l_fs_write_json_atomic(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  luaL_checkany(L, 2);
  const auto mode = static_cast<unsigned>(luaL_optinteger(L, 3, 0644));
  std::string contents = encode_json(L, 2, true);
  contents += '\n';
  auto r = write_file_atomic(path, contents, mode);
  if (!r.ok()) return push_failure(L, r.error());
  lua_pushboolean(L, 1);
  return 1;
}

// exists(path) -> bool
int l_fs_exists(lua_State* L) {
  std::error_code ec;
  lua_pushboolean(L, fs::exists(check_std_string(L, 1), ec));
  return 1;
}

// mkdirs(path [, mode = 0700]) -> true | nil, err. Missing directories get
// exactly `mode`; the result must pass check_trusted_dir (core/store/dirs).
int l_fs_mkdirs(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  const auto mode = static_cast<mode_t>(luaL_optinteger(L, 2, 0700));
  if (auto r = make_trusted_dirs(path, mode); !r) return push_failure(L, r.error());
  lua_pushboolean(L, 1);
  return 1;
}

// list(dir) -> sorted names | nil, err
int l_fs_list(lua_State* L) {
  const std::string dir = check_std_string(L, 1);
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return push_failure(L, "cannot list " + dir + ": " + ec.message());
  std::sort(names.begin(), names.end());
  lua_createtable(L, static_cast<int>(names.size()), 0);
  for (std::size_t i = 0; i < names.size(); ++i) {
    lua_pushstring(L, names[i].c_str());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// size(path) -> bytes | nil, err
int l_fs_size(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return push_failure(L, path + ": " + ec.message());
  lua_pushnumber(L, static_cast<lua_Number>(size));
  return 1;
}

// mtime(path) -> seconds since the epoch (with the nanoseconds) | nil, err
int l_fs_mtime(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return push_failure(L, path + ": " + std::strerror(errno));
  lua_pushnumber(L, static_cast<lua_Number>(st.st_mtim.tv_sec) + static_cast<lua_Number>(st.st_mtim.tv_nsec) / 1e9);
  return 1;
}

// expand_user("~/x") -> "/home/u/x"
int l_fs_expand_user(lua_State* L) {
  lua_pushstring(L, expand_user(check_std_string(L, 1)).c_str());
  return 1;
}

}  // namespace

int luaopen_rch_fs(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"read", guarded<l_fs_read>},
      {"write_atomic", guarded<l_fs_write_atomic>},
      {"write_json_atomic", guarded<l_fs_write_json_atomic>},
      {"exists", guarded<l_fs_exists>},
      {"mkdirs", guarded<l_fs_mkdirs>},
      {"list", guarded<l_fs_list>},
      {"size", guarded<l_fs_size>},
      {"mtime", guarded<l_fs_mtime>},
      {"expand_user", guarded<l_fs_expand_user>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
