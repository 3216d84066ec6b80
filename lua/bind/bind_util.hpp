// Helpers shared by the binding files: the one wrapper every Lua-callable
// function goes through, blocking-job yields, and JSON <-> Lua conversion.
#pragma once

#include <lua.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lua/bind/engine.hpp"

namespace rch::lua {

// Thrown for API misuse (wrong argument shape): becomes a Lua error.
struct Misuse : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every Lua-callable function is registered as guarded<l_x>: a C++ exception
// becomes `nil, message` (expected failure) or a Lua error (Misuse); no
// exception crosses a Lua frame. Lua errors raised inside F (luaL_check*)
// are not std::exceptions and pass through untouched.
template <int (*F)(lua_State*)>
int guarded(lua_State* L) {
  std::string message;
  bool misuse = false;
  try {
    return F(L);
  } catch (const Misuse& e) {
    message = e.what();
    misuse = true;
  } catch (const std::exception& e) {
    message = e.what();
  }
  if (misuse) return luaL_error(L, "%s", message.c_str());
  lua_pushnil(L);
  lua_pushstring(L, message.c_str());
  return 2;
}

// Runs `job` on the pool and yields the calling task; on the loop thread,
// `push` turns the job's value into Lua results and the task resumes with
// them. Must be the tail of a C function: `return yield_blocking(...)`.
template <class T>
int yield_blocking(lua_State* L, const char* api, std::function<T()> job, std::function<int(lua_State*, T&)> push) {
  const int task = require_task(L, api);
  Engine& engine = engine_of(L);
  engine.executor().run_blocking([&engine, task, job = std::move(job), push = std::move(push)]() {
    auto value = std::make_shared<T>(job());
    return Executor::Completion([&engine, task, value, push]() {
      engine.resume_later(task, [value, push](lua_State* co) { return push(co, *value); });
    });
  });
  return lua_yield(L, 0);
}

// Pushes `nil, message` and returns 2: the expected-failure convention.
inline int push_failure(lua_State* L, const std::string& message) {
  lua_pushnil(L);
  lua_pushlstring(L, message.data(), message.size());
  return 2;
}

void push_json(lua_State* L, const nlohmann::json& value);
// Pushes the value of a JSON text (as rch.json.decode); false, nothing pushed, when it is not valid JSON.
bool push_json_text(lua_State* L, std::string_view text);
// The same, but a top-level object needs only `fields` (JSON that the fast
// path leaves to the parser still comes whole): less to build and collect.
bool push_json_fields(lua_State* L, std::string_view text, const std::vector<std::string>& fields);
// The Lua value at idx as JSON, as rch.json.encode (with pretty: {pretty = true}).
std::string encode_json(lua_State* L, int idx, bool pretty = false);
// Converts the Lua value at idx; tables with keys 1..n become arrays.
nlohmann::json to_json(lua_State* L, int idx);

std::string check_std_string(lua_State* L, int idx);
// A table of strings (argv) at idx.
std::vector<std::string> check_string_list(lua_State* L, int idx);
// Optional field of a table at idx.
std::string opt_string_field(lua_State* L, int idx, const char* key, const std::string& fallback);
lua_Number opt_number_field(lua_State* L, int idx, const char* key, lua_Number fallback);
bool opt_bool_field(lua_State* L, int idx, const char* key, bool fallback);

// A progress counter for a long transfer: the blocking job writes atomics on
// the pool, a Lua task reads them on its own schedule (`:get()` -> done,
// total); no Lua runs on the pool. Made by rch.net.progress() and
// rch.ssh.progress(), passed as opts.progress.
struct ProgressState {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> total{0};
};
using ProgressBox = std::shared_ptr<ProgressState>;
inline constexpr char kProgressMeta[] = "rch.progress";

inline int l_progress_get(lua_State* L) {
  const ProgressBox& box = *static_cast<ProgressBox*>(luaL_checkudata(L, 1, kProgressMeta));
  lua_pushnumber(L, static_cast<lua_Number>(box->done.load(std::memory_order_relaxed)));
  lua_pushnumber(L, static_cast<lua_Number>(box->total.load(std::memory_order_relaxed)));
  return 2;
}

inline int l_progress_gc(lua_State* L) {
  static_cast<ProgressBox*>(luaL_checkudata(L, 1, kProgressMeta))->~ProgressBox();
  return 0;
}

// progress() -> a new progress object
inline int l_progress_new(lua_State* L) {
  auto* slot = static_cast<ProgressBox*>(lua_newuserdata(L, sizeof(ProgressBox)));
  new (slot) ProgressBox(std::make_shared<ProgressState>());
  if (luaL_newmetatable(L, kProgressMeta) != 0) {
    lua_pushcfunction(L, l_progress_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, guarded<l_progress_get>);
    lua_setfield(L, -2, "get");
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  return 1;
}

// The progress object in field `progress` of the options table at idx, or null.
inline ProgressBox opt_progress_field(lua_State* L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return nullptr;
  lua_getfield(L, idx, "progress");
  ProgressBox box;
  if (!lua_isnil(L, -1)) box = *static_cast<ProgressBox*>(luaL_checkudata(L, -1, kProgressMeta));
  lua_pop(L, 1);
  return box;
}

// Registers functions into the table on top of the stack.
void set_functions(lua_State* L, const luaL_Reg* functions);

// Creates the metatable `name` of a userdata type: `gc` as __gc, `methods`
// as __index. The stack is left as it was.
void register_type(lua_State* L, const char* name, lua_CFunction gc, const luaL_Reg* methods);

}  // namespace rch::lua
