// Helpers shared by the binding files: the one wrapper every Lua-callable
// function goes through, blocking-job yields, and JSON <-> Lua conversion.
#pragma once

#include <lua.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
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
// Converts the Lua value at idx; tables with keys 1..n become arrays.
nlohmann::json to_json(lua_State* L, int idx);

std::string check_std_string(lua_State* L, int idx);
// A table of strings (argv) at idx.
std::vector<std::string> check_string_list(lua_State* L, int idx);
// Optional field of a table at idx.
std::string opt_string_field(lua_State* L, int idx, const char* key, const std::string& fallback);
lua_Number opt_number_field(lua_State* L, int idx, const char* key, lua_Number fallback);
bool opt_bool_field(lua_State* L, int idx, const char* key, bool fallback);

// Registers functions into the table on top of the stack.
void set_functions(lua_State* L, const luaL_Reg* functions);

}  // namespace rch::lua
