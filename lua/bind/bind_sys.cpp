// Module rch.sys: facts about the local machine and process (user, host,
// terminal, own executable) and running a local program on the pool.
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fstream>

#include "core/exec/process.hpp"
#include "core/util/user.hpp"
#include "core/util/uuid.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

int l_sys_user(lua_State* L) {
  lua_pushstring(L, current_user_name().c_str());
  return 1;
}

int l_sys_hostname(lua_State* L) {
  lua_pushstring(L, host_name().c_str());
  return 1;
}

int l_sys_isatty(lua_State* L) {
  lua_pushboolean(L, isatty(static_cast<int>(luaL_checkinteger(L, 1))));
  return 1;
}

// term_size() -> columns, rows of stdout's terminal (80, 24 when unknown)
int l_sys_term_size(lua_State* L) {
  winsize ws{};
  const bool ok = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0;
  lua_pushinteger(L, ok ? ws.ws_col : 80);
  lua_pushinteger(L, ok ? ws.ws_row : 24);
  return 2;
}

// exe_path() -> absolute path of the running executable
int l_sys_exe_path(lua_State* L) {
  char buffer[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return push_failure(L, "cannot resolve /proc/self/exe");
  lua_pushlstring(L, buffer, static_cast<std::size_t>(n));
  return 1;
}

// read_head(path, n) -> the first n bytes (fewer if the file is shorter) | nil, err
int l_sys_read_head(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  const auto n = static_cast<std::size_t>(luaL_checkinteger(L, 2));
  std::ifstream in(path, std::ios::binary);
  if (!in) return push_failure(L, "cannot open " + path);
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  lua_pushlstring(L, bytes.data(), bytes.size());
  return 1;
}

// run(argv [, timeout]) -> {code=, out=, err=, timed_out=} | nil, err   (yields)
int l_sys_run(lua_State* L) {
  const auto argv = check_string_list(L, 1);
  const int timeout = static_cast<int>(luaL_optinteger(L, 2, 30));
  return yield_blocking<Result<ProcessResult>>(
      L, "rch.sys.run", [argv, timeout] { return run_process(argv, timeout); },
      [](lua_State* co, Result<ProcessResult>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, 0, 4);
        lua_pushinteger(co, r->exit_code);
        lua_setfield(co, -2, "code");
        lua_pushlstring(co, r->out.data(), r->out.size());
        lua_setfield(co, -2, "out");
        lua_pushlstring(co, r->err.data(), r->err.size());
        lua_setfield(co, -2, "err");
        lua_pushboolean(co, r->timed_out);
        lua_setfield(co, -2, "timed_out");
        return 1;
      });
}

// rss_mb() -> peak resident set size of this process in MiB
int l_sys_peak_rss_mb(lua_State* L) {
  std::ifstream status("/proc/self/status");
  std::string key;
  double kb = 0;
  while (status >> key) {
    if (key == "VmHWM:") {
      status >> kb;
      break;
    }
  }
  lua_pushnumber(L, kb / 1024.0);
  return 1;
}

// exit_on_interrupt(code): SIGINT ends the process with `code` (status --watch,
// where Ctrl-C is the normal way out and nothing is left half-written).
int l_sys_exit_on_interrupt(lua_State* L) {
  static int exit_code = 0;
  exit_code = static_cast<int>(luaL_checkinteger(L, 1));
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    (void)!write(STDOUT_FILENO, "\n", 1);
    _exit(exit_code);
  };
  sigaction(SIGINT, &sa, nullptr);
  return 0;
}

// uuid() -> a random UUID v4
int l_sys_uuid(lua_State* L) {
  lua_pushstring(L, uuid_v4().c_str());
  return 1;
}

}  // namespace

int luaopen_rch_sys(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"user", guarded<l_sys_user>},
      {"hostname", guarded<l_sys_hostname>},
      {"isatty", guarded<l_sys_isatty>},
      {"term_size", guarded<l_sys_term_size>},
      {"exe_path", guarded<l_sys_exe_path>},
      {"read_head", guarded<l_sys_read_head>},
      {"run", guarded<l_sys_run>},
      {"uuid", guarded<l_sys_uuid>},
      {"exit_on_interrupt", guarded<l_sys_exit_on_interrupt>},
      {"peak_rss_mb", guarded<l_sys_peak_rss_mb>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
