// Module rch.log: the engine's and scripts' log lines, through core/log; the
// output sanitiser (rch.log.sanitize) and the terminal sink that applies it to
// everything Lua writes to stdout and stderr.
#include <unistd.h>

#include "core/log/log.hpp"
#include "core/util/text.hpp"
#include "lua/bind/bind_util.hpp"
#include "lua/bind/bindings.hpp"

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

// to_file() -> whether the log goes to a --log-file rather than stderr
int l_log_to_file(lua_State* L) {
  lua_pushboolean(L, log::to_file());
  return 1;
}

// set_level(name): e.g. stress mode silences per-worker warnings it reports itself.
int l_log_set_level(lua_State* L) {
  log::set_level(check_level(L, 1));
  return 0;
}

// True when sanitize_for_terminal could change s (a fast pre-check: most
// output is printable ASCII).
bool needs_sanitizing(std::string_view s, bool multiline) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F) continue;
    if (multiline && (c == '\n' || c == '\t')) continue;
    return true;
  }
  return false;
}

// sanitize(text [, {multiline = true, keep_sgr = true}]) -> text safe for a
// terminal or a log line: controls shown as "\x1b", invalid UTF-8 as U+FFFD.
// Single-line by default (a table cell, one status line: '\n' is escaped too);
// keep_sgr keeps colour sequences (a cell painted by rch.ui).
int l_log_sanitize(lua_State* L) {
  std::size_t len = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  const SanitizeOptions options{.multiline = opt_bool_field(L, 2, "multiline", false),
                                .keep_sgr = opt_bool_field(L, 2, "keep_sgr", false)};
  if (!needs_sanitizing({s, len}, options.multiline)) {
    lua_settop(L, 1);
    return 1;
  }
  const std::string out = sanitize_for_terminal({s, len}, options);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// The sink's filter for one stream: each string argument sanitised as
// multi-line output; SGR colours kept where the stream shows colour (upvalue 1).
int l_log_sink_filter(lua_State* L) {
  const bool keep_sgr = lua_toboolean(L, lua_upvalueindex(1)) != 0;
  const int n = lua_gettop(L);
  for (int i = 1; i <= n; ++i) {
    if (lua_type(L, i) != LUA_TSTRING) continue;
    std::size_t len = 0;
    const char* s = lua_tolstring(L, i, &len);
    if (!needs_sanitizing({s, len}, true)) continue;
    const std::string out = sanitize_for_terminal({s, len}, {.multiline = true, .keep_sgr = keep_sgr});
    lua_pushlstring(L, out.data(), out.size());
    lua_replace(L, i);
  }
  return n;
}

// Routes io.stdout:write, io.stderr:write, io.write and print through the
// filters; returns the unfiltered stdout writer (rch.log.control).
const char kSinkChunk[] = R"(
local filter_out, filter_err = ...
local stdout, stderr = io.stdout, io.stderr
local methods = getmetatable(stdout).__index
local write = methods.write
methods.write = function(f, ...)
  if f == stdout then return write(f, filter_out(...)) end
  if f == stderr then return write(f, filter_err(...)) end
  return write(f, ...)
end
local output = io.output
io.write = function(...) return methods.write(output(), ...) end
print = function(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  methods.write(stdout, table.concat(parts, "\t"), "\n")
end
return function(...) return write(stdout, ...) end
)";

const char kControlKey = 0;  // registry: the unfiltered stdout writer

// control(seq…): writes terminal control sequences (cursor movement, erase)
// to stdout unfiltered: only for rch's own redraws, never for data.
int l_log_control(lua_State* L) {
  lua_pushlightuserdata(L, const_cast<char*>(&kControlKey));
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

}  // namespace

void install_terminal_sink(lua_State* L) {
  if (luaL_loadbuffer(L, kSinkChunk, sizeof kSinkChunk - 1, "=rch.log.sink") != 0) lua_error(L);
  for (const int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    lua_pushboolean(L, log::color_on(fd));
    lua_pushcclosure(L, guarded<l_log_sink_filter>, 1);
  }
  lua_call(L, 2, 1);
  lua_pushlightuserdata(L, const_cast<char*>(&kControlKey));
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

int luaopen_rch_log(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"trace", guarded<l_log_write<log::Level::trace>>},
      {"debug", guarded<l_log_write<log::Level::debug>>},
      {"info", guarded<l_log_write<log::Level::info>>},
      {"warn", guarded<l_log_write<log::Level::warn>>},
      {"error", guarded<l_log_write<log::Level::error>>},
      {"enabled", guarded<l_log_enabled>},
      {"to_file", guarded<l_log_to_file>},
      {"set_level", guarded<l_log_set_level>},
      {"sanitize", guarded<l_log_sanitize>},
      {"control", guarded<l_log_control>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
