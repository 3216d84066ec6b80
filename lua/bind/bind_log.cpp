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

int l_log_enabled(lua_State* L) {
  const std::string name = luaL_checkstring(L, 1);
  log::Level level = log::Level::info;
  if (name == "trace") level = log::Level::trace;
  else if (name == "debug") level = log::Level::debug;
  else if (name == "warn") level = log::Level::warn;
  else if (name == "error") level = log::Level::error;
  lua_pushboolean(L, log::enabled(level));
  return 1;
}

}  // namespace

int luaopen_rch_log(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"trace", guarded<l_log_write<log::Level::trace>>}, {"debug", guarded<l_log_write<log::Level::debug>>},
      {"info", guarded<l_log_write<log::Level::info>>},   {"warn", guarded<l_log_write<log::Level::warn>>},
      {"error", guarded<l_log_write<log::Level::error>>}, {"enabled", guarded<l_log_enabled>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
