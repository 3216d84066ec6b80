// package.preload entries for the C++ modules (the folder lists the API).
#include "lua/bind/bindings.hpp"

#include <lua.hpp>

namespace rch::lua {

void open_bindings(lua_State* L) {
  static const luaL_Reg modules[] = {
      {"rch.sched", luaopen_rch_sched},   {"rch.json", luaopen_rch_json},         {"rch.log", luaopen_rch_log},
      {"rch.fs", luaopen_rch_fs},         {"rch.crypto", luaopen_rch_crypto},     {"rch.version", luaopen_rch_version},
      {"rch.config", luaopen_rch_config}, {"rch.ssh", luaopen_rch_ssh},           {"rch.sys", luaopen_rch_sys},
      {"rch.store", luaopen_rch_store},   {"rch.resolver", luaopen_rch_resolver}, {"rch.sim", luaopen_rch_sim},
      {"rch.net", luaopen_rch_net},       {"rch.http", luaopen_rch_http},         {"rch.archive", luaopen_rch_archive},
      {"rch.daemon", luaopen_rch_daemon}, {"rch.install", luaopen_rch_install},   {nullptr, nullptr},
  };
  // Tables decoded from JSON arrays carry this so `[]` round-trips.
  luaL_newmetatable(L, "rch.json.array");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (const luaL_Reg* m = modules; m->name != nullptr; ++m) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
  install_terminal_sink(L);
}

}  // namespace rch::lua
