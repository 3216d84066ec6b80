// Module rch.daemon: the client of the local daemon rchd (core/agent's
// daemon_client) for `rch update`: status, drain, undrain and shutdown over
// its Unix socket. Every call does socket I/O (shutdown also waits for the
// process to exit), so each runs on the pool and yields.
#include <chrono>

#include "core/agent/daemon_client.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

int push_ok(lua_State* co, Result<void>& r) {
  if (!r.ok()) return push_failure(co, r.error());
  lua_pushboolean(co, 1);
  return 1;
}

// socket_path(rch_home) -> the default socket, <rch_home>/rchd.sock
int l_daemon_socket_path(lua_State* L) {
  lua_pushstring(L, daemon_socket_path(check_std_string(L, 1)).c_str());
  return 1;
}

// status(socket) -> {running=, pid=, version=, draining=, active_builds=} | nil, err   (yields)
// running=false when nobody listens on the socket.
int l_daemon_status(lua_State* L) {
  const std::string socket = check_std_string(L, 1);
  return yield_blocking<Result<DaemonStatus>>(
      L, "rch.daemon.status", [socket] { return daemon_status(socket); },
      [](lua_State* co, Result<DaemonStatus>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, 0, 5);
        lua_pushboolean(co, r->running);
        lua_setfield(co, -2, "running");
        lua_pushinteger(co, r->pid);
        lua_setfield(co, -2, "pid");
        lua_pushlstring(co, r->version.data(), r->version.size());
        lua_setfield(co, -2, "version");
        lua_pushboolean(co, r->draining);
        lua_setfield(co, -2, "draining");
        lua_pushinteger(co, r->active_builds);
        lua_setfield(co, -2, "active_builds");
        return 1;
      });
}

// drain(socket) -> true | nil, err   (yields; returns at once, poll status)
int l_daemon_drain(lua_State* L) {
  const std::string socket = check_std_string(L, 1);
  return yield_blocking<Result<void>>(
      L, "rch.daemon.drain", [socket] { return daemon_drain(socket); }, push_ok);
}

// undrain(socket) -> true | nil, err   (yields)
int l_daemon_undrain(lua_State* L) {
  const std::string socket = check_std_string(L, 1);
  return yield_blocking<Result<void>>(
      L, "rch.daemon.undrain", [socket] { return daemon_undrain(socket); }, push_ok);
}

// shutdown(socket, force, wait_seconds) -> true | nil, err   (yields until the process is gone)
int l_daemon_shutdown(lua_State* L) {
  const std::string socket = check_std_string(L, 1);
  const bool force = lua_toboolean(L, 2) != 0;
  const auto wait = std::chrono::seconds(luaL_optinteger(L, 3, 10));
  return yield_blocking<Result<void>>(
      L, "rch.daemon.shutdown", [socket, force, wait] { return daemon_shutdown(socket, force, wait); }, push_ok);
}

}  // namespace

int luaopen_rch_daemon(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"socket_path", guarded<l_daemon_socket_path>},
      {"status", guarded<l_daemon_status>},
      {"drain", guarded<l_daemon_drain>},
      {"undrain", guarded<l_daemon_undrain>},
      {"shutdown", guarded<l_daemon_shutdown>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
