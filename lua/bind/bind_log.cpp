// Module rch.log: the engine's and scripts' log lines, through core/log.
#include "core/log/log.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// Joins the arguments with spaces (tostring each), like print.
std::string join_args(lua_State* L) {
  std::string out;
  const int n = lua_gettop(L);
  lua_getglobal(L, "tostring");
  for (int i = 1; i <= n; ++i) {
    lua_pushvalue(L, -1);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (i > 1) out += ' ';
    std::size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    out.append(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

template <log::Level level>
int l_log_write(lua_State* L) {
  if (log::enabled(level)) log::write(level, join_args(L));
  return 0;
}

log::Level check_level(lua_State* L, int idx) {
  const std::string name = luaL_checkstring(L, idx);
  if (name == "trace") return log::Level::trace;
  if (name == "debug") return log::Level::debug;
  if (name == "info") return log::Level::info;
  if (name == "warn") return log::Level::warn;
  if (name == "error") return log::Level::error;
  if (name == "off") return log::Level::off;
  throw Misuse("rch.log: unknown level '" + name + "'");
}

int l_log_enabled(lua_State* L) {
  lua_pushboolean(L, log::enabled(check_level(L, 1)));
  return 1;
}

// set_level(name): e.g. stress mode silences per-worker warnings it reports itself.
int l_log_set_level(lua_State* L) {
  log::set_level(check_level(L, 1));
  return 0;
}

}  // namespace

int luaopen_rch_log(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"trace", guarded<l_log_write<log::Level::trace>>},
      {"debug", guarded<l_log_write<log::Level::debug>>},
      {"info", guarded<l_log_write<log::Level::info>>},
      {"warn", guarded<l_log_write<log::Level::warn>>},
      {"error", guarded<l_log_write<log::Level::error>>},
      {"enabled", guarded<l_log_enabled>},
      {"set_level", guarded<l_log_set_level>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
