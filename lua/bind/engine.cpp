// Engine: lua_State set-up, the script resolver, and the task scheduler.
// Tasks are coroutines; a yielding API registers a completion and yields, the
// completion is posted to the loop, and resume() continues the coroutine
// there. Only the loop thread ever touches a lua_State.
#include "lua/bind/engine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core/log/log.hpp"
#include "lua/bind/bind_util.hpp"
#include "lua/bind/bindings.hpp"
#include "lua/bind/embedded.hpp"

namespace rch::lua {
namespace fs = std::filesystem;

namespace {

const char kEngineKey = 'E';  // address used as the registry key of the Engine*

// A task's error is kept, joined and shown: a script raising a huge string
// must not make every later copy of it huge too.
constexpr std::size_t kMaxTaskError = 16 * 1024;

std::string clip_error(std::string message) {
  if (message.size() <= kMaxTaskError) return message;
  const std::size_t cut = message.size() - kMaxTaskError;
  message.resize(kMaxTaskError);
  return message + "… (" + std::to_string(cut) + " more bytes)";
}

// Runs fn(L) under lua_cpcall, so that a Lua error (out of memory, a string
// too long for Lua) comes back as the message instead of reaching
// lua_atpanic. L must not be running Lua code of its own (the main state
// between resumes, or a running coroutine).
std::optional<std::string> protect(lua_State* L, const std::function<void(lua_State*)>& fn) {
  const auto trampoline = [](lua_State* S) -> int {
    (*static_cast<const std::function<void(lua_State*)>*>(lua_touserdata(S, 1)))(S);
    return 0;
  };
  if (lua_cpcall(L, trampoline, const_cast<std::function<void(lua_State*)>*>(&fn)) == 0) return std::nullopt;
  std::string message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)";
  lua_pop(L, 1);
  return message;
}

// Only reached if a Lua error escapes every protected call: say what happened
// instead of LuaJIT's bare "PANIC"; LuaJIT then exits.
int on_panic(lua_State* L) {
  const char* message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)";
  log::error(std::string("internal error: an unprotected Lua error stopped rch: ") + message);
  return 0;
}

std::string normalize_name(std::string name) {
  if (name.size() < 4 || name.compare(name.size() - 4, 4, ".lua") != 0) name += ".lua";
  return name;
}

// scripts/coverage.sh: with RCH_LUA_COVERAGE=DIR, rch.coverage counts the Lua
// lines this engine runs (start) and writes them to DIR when it closes (stop).
void call_coverage(lua_State* L, const char* function) {
  const char* dir = std::getenv("RCH_LUA_COVERAGE");
  if (dir == nullptr || *dir == '\0') return;
  const auto failed = protect(L, [function, dir](lua_State* S) {
    lua_getglobal(S, "require");
    lua_pushstring(S, "rch.coverage");
    lua_call(S, 1, 1);
    lua_getfield(S, -1, function);
    lua_pushstring(S, dir);
    lua_call(S, 1, 0);
  });
  if (failed) log::warn("RCH_LUA_COVERAGE: " + *failed);
}

const EmbeddedScript* find_builtin(const std::string& name) {
  for (std::size_t i = 0; i < kEmbeddedScriptCount; ++i) {
    if (name == kEmbeddedScripts[i].name) return &kEmbeddedScripts[i];
  }
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------- Resolver

Resolver::Resolver(std::vector<fs::path> script_dirs, fs::path config_dir) : roots_(std::move(script_dirs)) {
  if (!config_dir.empty()) roots_.push_back(std::move(config_dir));
}

Result<std::optional<Resolver::Script>> Resolver::find(std::string name) const {
  name = normalize_name(std::move(name));
  if (name.find("..") != std::string::npos || (!name.empty() && name.front() == '/')) {
    return std::optional<Script>{};
  }
  for (const auto& root : roots_) {
    const fs::path file = root / name;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) continue;
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    if (!in.good() && !in.eof()) return make_error("cannot read " + file.string());
    return std::optional<Script>{Script{name, file.string(), "@" + file.string(), buffer.str()}};
  }
  if (const EmbeddedScript* builtin = find_builtin(name)) {
    return std::optional<Script>{Script{name, "builtin", "@builtin/" + name,
                                        std::string(reinterpret_cast<const char*>(builtin->data), builtin->size)}};
  }
  return std::optional<Script>{};
}

std::vector<Resolver::Listing> Resolver::list() const {
  std::set<std::string> names;
  for (std::size_t i = 0; i < kEmbeddedScriptCount; ++i) names.insert(kEmbeddedScripts[i].name);
  for (const auto& root : roots_) {
    for (const char* sub : {"rch", "strategies", "hooks"}) {
      std::error_code ec;
      if (!fs::is_directory(root / sub, ec)) continue;
      for (auto it = fs::recursive_directory_iterator(root / sub, ec); it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file() && it->path().extension() == ".lua") {
          names.insert(fs::relative(it->path(), root).generic_string());
        }
      }
    }
  }
  std::vector<Listing> out;
  for (const auto& name : names) {
    std::string origin = "builtin";
    for (const auto& root : roots_) {
      std::error_code ec;
      if (fs::is_regular_file(root / name, ec)) {
        origin = (root / name).string();
        break;
      }
    }
    out.push_back({name, origin, origin != "builtin" && find_builtin(name) != nullptr});
  }
  return out;
}

std::string Resolver::describe_search_path() const {
  std::string out;
  for (const auto& root : roots_) out += root.string() + ", ";
  return out + "builtin";
}

// ---------------------------------------------------------------- tasks

struct Engine::Task {
  int id = 0;
  std::string name;
  lua_State* co = nullptr;
  int thread_ref = LUA_NOREF;   // keeps the coroutine alive while it runs
  int results_ref = LUA_NOREF;  // {n = …, …} once finished
  const char* waiting_on = nullptr;
  bool done = false;
  bool ok = false;
  bool joined = false;
  std::string error;
  std::vector<int> joiners;
};

Engine& engine_of(lua_State* L) {
  lua_pushlightuserdata(L, const_cast<char*>(&kEngineKey));
  lua_rawget(L, LUA_REGISTRYINDEX);
  auto* engine = static_cast<Engine*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *engine;
}

int require_task(lua_State* L, const char* api) {
  Engine& engine = engine_of(L);
  const int id = engine.task_of(L);
  if (id == 0) {
    luaL_error(L,
               "%s yields and must be called from an rch task (not the main chunk of a "
               "plain coroutine or a coroutine.wrap body)",
               api);
  }
  engine.set_waiting(id, api);
  return id;
}

Engine::Engine(EngineOptions options)
    : options_(std::move(options)),
      resolver_(options_.script_dirs, options_.config_dir),
      executor_(options_.pool_threads) {
  L_ = luaL_newstate();
  if (L_ == nullptr) throw std::runtime_error("cannot create Lua state");
  lua_atpanic(L_, on_panic);
  luaL_openlibs(L_);
  lua_pushlightuserdata(L_, const_cast<char*>(&kEngineKey));
  lua_pushlightuserdata(L_, this);
  lua_rawset(L_, LUA_REGISTRYINDEX);
  install_require();
  open_bindings(L_);
  if (const char* seed = std::getenv("RCH_SHUFFLE_COMPLETIONS")) {
    executor_.shuffle_completions(std::strtoull(seed, nullptr, 10));
  }
  call_coverage(L_, "start");
}

Engine::~Engine() {
  if (L_ == nullptr) return;
  call_coverage(L_, "stop");
  lua_close(L_);
}

namespace {

// package.loaders[1]: the one resolver behind require("rch.plan") and
// require("strategies.canary"); "a.b" is looked up as a/b.lua, then a/b/init.lua.
int l_resolver_loader(lua_State* L) {
  const std::string module = luaL_checkstring(L, 1);
  std::string path = module;
  std::replace(path.begin(), path.end(), '.', '/');
  const Resolver& resolver = engine_of(L).resolver();
  for (const std::string& candidate : {path + ".lua", path + "/init.lua"}) {
    auto found = resolver.find(candidate);
    if (!found.ok()) return luaL_error(L, "%s", found.error().c_str());
    if (!found.value()) continue;
    const auto& script = *found.value();
    if (luaL_loadbuffer(L, script.source.data(), script.source.size(), script.chunkname.c_str()) != 0) {
      return lua_error(L);  // syntax error, already "file:line: message"
    }
    return 1;
  }
  lua_pushfstring(L, "\n\tno rch script '%s.lua' in %s", path.c_str(), resolver.describe_search_path().c_str());
  return 1;
}

}  // namespace

void Engine::install_require() {
  lua_getglobal(L_, "package");
  // Only the resolver serves require: no stray modules from LUA_PATH or cwd.
  lua_pushstring(L_, "");
  lua_setfield(L_, -2, "path");
  lua_pushstring(L_, "");
  lua_setfield(L_, -2, "cpath");
  lua_getfield(L_, -1, "loaders");
  const int n = static_cast<int>(lua_objlen(L_, -1));
  for (int i = n; i >= 1; --i) {  // shift, then put ours first
    lua_rawgeti(L_, -1, i);
    lua_rawseti(L_, -2, i + 1);
  }
  lua_pushcfunction(L_, l_resolver_loader);
  lua_rawseti(L_, -2, 1);
  lua_pop(L_, 2);
}

int Engine::spawn(lua_State* L, int fn_index, int nargs, std::string name) {
  auto task = std::make_unique<Task>();
  task->id = static_cast<int>(tasks_.size()) + 1;
  task->name = std::move(name);
  // On the caller's state: if this allocation fails, the error is the caller's
  // (a task's, caught by its resume) rather than an unprotected one on L_.
  task->co = lua_newthread(L);
  task->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  // Move function and arguments onto the new coroutine's stack.
  lua_pushvalue(L, fn_index);
  lua_xmove(L, task->co, 1);
  for (int i = 0; i < nargs; ++i) lua_pushvalue(L, fn_index + 1 + i);
  lua_xmove(L, task->co, nargs);
  const int id = task->id;
  by_thread_.emplace(task->co, id);
  tasks_.push_back(std::move(task));
  executor_.post([this, id, nargs] { resume(id, nargs); });
  return id;
}

int Engine::task_of(lua_State* L) const {
  auto it = by_thread_.find(L);
  return it == by_thread_.end() ? 0 : it->second;
}

bool Engine::task_done(int id) const { return tasks_.at(id - 1)->done; }

void Engine::add_joiner(int target, int waiter) {
  tasks_.at(target - 1)->joiners.push_back(waiter);
  tasks_.at(waiter - 1)->waiting_on = "rch.sched.join";
}

int Engine::push_task_results(lua_State* L, int id) {
  Task& task = *tasks_.at(id - 1);
  task.joined = true;
  if (!task.ok) {
    lua_pushboolean(L, 0);
    lua_pushlstring(L, task.error.data(), task.error.size());
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, task.results_ref);
  lua_xmove(L_, L, 1);
  const int results = lua_gettop(L);
  lua_getfield(L, results, "n");
  const int n = static_cast<int>(lua_tointeger(L, -1));
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many task results");
  for (int i = 1; i <= n; ++i) lua_rawgeti(L, results, i);
  lua_remove(L, results);
  return n + 1;
}

void Engine::resume_later(int id, std::function<int(lua_State*)> push) {
  executor_.post([this, id, push = std::move(push)] {
    Task& task = *tasks_.at(id - 1);
    if (task.done) return;  // the task died meanwhile: drop the result
    // The results are built on L_ under a protected call and only then moved
    // onto the suspended coroutine: building them can fail (out of memory, a
    // string too long), and an error raised outside a protected call would
    // reach lua_atpanic and end the process.
    int nargs = 0;
    const auto hand_over = [&](const std::function<int(lua_State*)>& make) {
      return protect(L_, [&](lua_State* L) {
        const int n = make(L);
        if (!lua_checkstack(task.co, n)) luaL_error(L, "too many results (%d)", n);
        lua_xmove(L, task.co, n);
        nargs = n;
      });
    };
    if (auto failed = hand_over(push)) {
      // The task gets the failure as a value, like any failed yielding API.
      const std::string message = std::string("cannot pass the result of ") +
                                  (task.waiting_on != nullptr ? task.waiting_on : "a call") + " to task '" + task.name +
                                  "': " + *failed;
      if (hand_over([&](lua_State* L) { return push_failure(L, message); })) {
        task.error = message;
        finish(task, false, 0);
        return;
      }
    }
    task.waiting_on = nullptr;
    resume(id, nargs);
  });
}

void Engine::set_waiting(int id, const char* api) { tasks_.at(id - 1)->waiting_on = api; }

void Engine::resume(int id, int nargs) {
  Task& task = *tasks_.at(id - 1);
  task.waiting_on = nullptr;
  const int status = lua_resume(task.co, nargs);
  if (status == LUA_YIELD) {
    if (task.waiting_on != nullptr) return;  // a yielding API registered its completion
    // A bare coroutine.yield() in a task body: nothing would ever resume it.
    task.error = "task '" + task.name + "' yielded outside an rch API (coroutine.yield in a task body?)";
    finish(task, false, 0);
    return;
  }
  if (status == 0) {
    finish(task, true, lua_gettop(task.co));
    return;
  }
  // No conversion on the dead coroutine (a number would allocate there, unprotected).
  std::string message = "(error object is not a string)";
  if (lua_type(task.co, -1) == LUA_TSTRING) {
    std::size_t len = 0;
    const char* raw = lua_tolstring(task.co, -1, &len);
    message = clip_error(std::string(raw, len));
  } else if (lua_type(task.co, -1) == LUA_TNUMBER) {
    char number[32];
    std::snprintf(number, sizeof number, "%.14g", lua_tonumber(task.co, -1));  // as Lua prints it
    message = number;
  }
  if (options_.verbosity > 0) {
    protect(L_, [&](lua_State* L) {
      luaL_traceback(L, task.co, message.c_str(), 0);
      message = lua_tostring(L, -1);
    });
  }
  task.error = message;
  finish(task, false, 0);
}

void Engine::finish(Task& task, bool ok, int nresults) {
  task.done = true;
  task.ok = ok;
  if (ok) {
    // Kept in a table until joined; protected like every push (it allocates).
    auto failed = protect(L_, [&](lua_State* L) {
      lua_createtable(L, nresults, 1);
      const int table = lua_gettop(L);
      lua_xmove(task.co, L, nresults);
      for (int i = nresults; i >= 1; --i) lua_rawseti(L, table, i);
      lua_pushinteger(L, nresults);
      lua_setfield(L, -2, "n");
      task.results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    });
    if (failed) {
      task.ok = false;
      task.error = "task '" + task.name + "' finished but its results could not be kept: " + *failed;
    }
  }
  by_thread_.erase(task.co);
  luaL_unref(L_, LUA_REGISTRYINDEX, task.thread_ref);
  task.thread_ref = LUA_NOREF;
  task.co = nullptr;
  for (int waiter : task.joiners) {
    const int id = task.id;
    resume_later(waiter, [this, id](lua_State* co) { return push_task_results(co, id); });
  }
  task.joiners.clear();
}

Result<nlohmann::json> Engine::run_main(std::function<int(lua_State*)> push_fn_and_args, int nargs) {
  const int base = lua_gettop(L_);
  push_fn_and_args(L_);
  const int id = spawn(L_, base + 1, nargs, "main");
  lua_settop(L_, base);
  executor_.run();
  Task& main = *tasks_.at(id - 1);
  for (const auto& task : tasks_) {
    if (!task->done) {
      log::error("task '" + task->name + "' never finished (waiting on " + (task->waiting_on ? task->waiting_on : "?") +
                 ")");
    } else if (!task->ok && !task->joined && task->id != id) {
      log::error("task '" + task->name + "' failed and nobody joined it: " + task->error);
    }
  }
  if (!main.done) return make_error("main task did not finish: it waits on something that never completes");
  if (!main.ok) return make_error(main.error);
  nlohmann::json out;
  lua_rawgeti(L_, LUA_REGISTRYINDEX, main.results_ref);
  lua_rawgeti(L_, -1, 1);
  out = to_json(L_, -1);
  lua_pop(L_, 2);
  return out;
}

Result<nlohmann::json> Engine::run_module(const std::string& module, const nlohmann::json& args) {
  static const char kBoot[] = "local module, args = ...\nreturn require('rch.ui').run_command(module, args)\n";
  if (luaL_loadbuffer(L_, kBoot, sizeof(kBoot) - 1, "=rch") != 0) return make_error(lua_tostring(L_, -1));
  const int fn = lua_gettop(L_);
  auto result = run_main(
      [&](lua_State* L) {
        lua_pushvalue(L, fn);
        lua_pushstring(L, module.c_str());
        push_json(L, args);
        return 0;
      },
      2);
  lua_settop(L_, fn - 1);
  return result;
}

Result<nlohmann::json> Engine::run_file(const fs::path& file, const std::vector<std::string>& args) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return make_error("cannot open " + file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string source = buffer.str();
  const std::string chunk = "@" + file.string();
  if (luaL_loadbuffer(L_, source.data(), source.size(), chunk.c_str()) != 0) {
    std::string message = lua_tostring(L_, -1);
    lua_pop(L_, 1);
    return make_error(message);
  }
  const int fn = lua_gettop(L_);
  auto result = run_main(
      [&](lua_State* L) {
        lua_pushvalue(L, fn);
        for (const auto& arg : args) lua_pushstring(L, arg.c_str());
        return 0;
      },
      static_cast<int>(args.size()));
  lua_settop(L_, fn - 1);
  return result;
}

}  // namespace rch::lua
