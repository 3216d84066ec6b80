// The C++ modules exposed to Lua, one binding file each (bind_<module>.cpp),
// registered in package.preload so `require "rch.ssh"` finds them.
#pragma once

struct lua_State;

namespace rch::lua {

int luaopen_rch_sched(lua_State* L);
int luaopen_rch_json(lua_State* L);
int luaopen_rch_log(lua_State* L);
int luaopen_rch_fs(lua_State* L);
int luaopen_rch_crypto(lua_State* L);
int luaopen_rch_version(lua_State* L);
int luaopen_rch_config(lua_State* L);
int luaopen_rch_ssh(lua_State* L);
int luaopen_rch_sys(lua_State* L);
int luaopen_rch_store(lua_State* L);
int luaopen_rch_resolver(lua_State* L);
int luaopen_rch_sim(lua_State* L);
int luaopen_rch_net(lua_State* L);
int luaopen_rch_http(lua_State* L);
int luaopen_rch_archive(lua_State* L);
int luaopen_rch_daemon(lua_State* L);
int luaopen_rch_install(lua_State* L);

// Fills package.preload with every module above and installs the terminal sink.
void open_bindings(lua_State* L);
// Everything Lua writes to stdout/stderr (io.stdout:write, io.write, print)
// passes the output sanitiser; rch.log.control is the unfiltered way out.
void install_terminal_sink(lua_State* L);

}  // namespace rch::lua
