// Module rch.sched: tasks (coroutines driven by the loop), join, sleep,
// suspend/wake, time.
#include <chrono>

#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// spawn(fn, ...) -> task id. The task starts on the next loop turn.
int l_sched_spawn(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  const int nargs = lua_gettop(L) - 1;
  Engine& engine = engine_of(L);
  lua_Debug ar;
  std::string name = "task";
  lua_pushvalue(L, 1);
  if (lua_getinfo(L, ">S", &ar) != 0) name = std::string(ar.short_src) + ":" + std::to_string(ar.linedefined);
  const int id = engine.spawn(L, 1, nargs, name);
  lua_pushinteger(L, id);
  return 1;
}

// join(id) -> true, results… | false, error. Yields until the task ends.
int l_sched_join(lua_State* L) {
  Engine& engine = engine_of(L);
  const int target = static_cast<int>(luaL_checkinteger(L, 1));
  if (target < 1 || static_cast<std::size_t>(target) > engine.task_count()) {
    return luaL_argerror(L, 1, "not a task id");
  }
  if (engine.task_done(target)) return engine.push_task_results(L, target);
  const int self = require_task(L, "rch.sched.join");
  if (self == target) return luaL_error(L, "rch.sched.join: a task cannot join itself");
  engine.add_joiner(target, self);
  return lua_yield(L, 0);
}

// sleep(seconds): yields the task; other tasks run meanwhile.
int l_sched_sleep(lua_State* L) {
  const double seconds = luaL_checknumber(L, 1);
  if (seconds < 0) return luaL_argerror(L, 1, "negative duration");
  const int self = require_task(L, "rch.sleep");
  Engine& engine = engine_of(L);
  engine.executor().after(std::chrono::milliseconds(static_cast<long long>(seconds * 1000)),
                          [&engine, self] { engine.resume_later(self, [](lua_State*) { return 0; }); });
  return lua_yield(L, 0);
}

// current() -> the id of the calling task (a task only).
int l_sched_current(lua_State* L) {
  const int self = engine_of(L).task_of(L);
  if (self == 0) return luaL_error(L, "rch.sched.current: not in a task");
  lua_pushinteger(L, self);
  return 1;
}

// suspend() yields the calling task until some other task calls wake(id)
// (what rch.semaphore is built on). Yields.
int l_sched_suspend(lua_State* L) {
  const int self = require_task(L, "rch.sched.suspend");
  engine_of(L).set_waiting(self, "rch.sched.suspend");
  return lua_yield(L, 0);
}

// wake(id): resumes task `id`, suspended by suspend(), on a later loop turn.
int l_sched_wake(lua_State* L) {
  Engine& engine = engine_of(L);
  const int target = static_cast<int>(luaL_checkinteger(L, 1));
  if (target < 1 || static_cast<std::size_t>(target) > engine.task_count()) {
    return luaL_argerror(L, 1, "not a task id");
  }
  engine.resume_later(target, [](lua_State*) { return 0; });
  return 0;
}

// now() -> seconds since the epoch (float, ms resolution).
int l_sched_now(lua_State* L) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  lua_pushnumber(L, std::chrono::duration<double>(now).count());
  return 1;
}

// monotonic() -> seconds on a steady clock, for durations.
int l_sched_monotonic(lua_State* L) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  lua_pushnumber(L, std::chrono::duration<double>(now).count());
  return 1;
}

// in_task() -> whether the caller may use yielding APIs.
int l_sched_in_task(lua_State* L) {
  lua_pushboolean(L, engine_of(L).task_of(L) != 0);
  return 1;
}

}  // namespace

int luaopen_rch_sched(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"spawn", guarded<l_sched_spawn>},         {"join", guarded<l_sched_join>},
      {"sleep", guarded<l_sched_sleep>},         {"now", guarded<l_sched_now>},
      {"monotonic", guarded<l_sched_monotonic>}, {"in_task", guarded<l_sched_in_task>},
      {"current", guarded<l_sched_current>},     {"suspend", guarded<l_sched_suspend>},
      {"wake", guarded<l_sched_wake>},           {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
