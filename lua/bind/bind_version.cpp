// Module rch.version: semver parse/compare and this build's version.
#include "core/version/build_info.hpp"
#include "core/version/semver.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// parse(s) -> normalized string | nil, err
int l_version_parse(lua_State* L) {
  auto v = Version::parse(check_std_string(L, 1));
  if (!v.ok()) return push_failure(L, v.error());
  lua_pushstring(L, v.value().to_string().c_str());
  return 1;
}

// extract(text) -> first version in text ("rch-wkr 0.2.0 (abc)") | nil, err
int l_version_extract(lua_State* L) {
  auto v = extract_version(check_std_string(L, 1));
  if (!v.ok()) return push_failure(L, v.error());
  lua_pushstring(L, v.value().to_string().c_str());
  return 1;
}

// compare(a, b) -> -1 | 0 | 1 (semver precedence); raises on a bad version
int l_version_compare(lua_State* L) {
  auto a = Version::parse(check_std_string(L, 1));
  auto b = Version::parse(check_std_string(L, 2));
  if (!a.ok()) throw Misuse("rch.version.compare: " + a.error());
  if (!b.ok()) throw Misuse("rch.version.compare: " + b.error());
  const auto order = a.value() <=> b.value();
  lua_pushinteger(L, order < 0 ? -1 : (order > 0 ? 1 : 0));
  return 1;
}

// current() -> the version of this rch
int l_version_current(lua_State* L) {
  lua_pushstring(L, build_version());
  return 1;
}

}  // namespace

int luaopen_rch_version(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"parse", guarded<l_version_parse>},
      {"extract", guarded<l_version_extract>},
      {"compare", guarded<l_version_compare>},
      {"current", guarded<l_version_current>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
