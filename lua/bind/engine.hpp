// The Lua engine: one lua_State on the orchestrator (loop) thread, the script
// resolver behind `require` and strategy/hook lookup, and the task scheduler
// that runs every worker's pipeline as a coroutine over rch::Executor.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/exec/executor.hpp"
#include "core/util/result.hpp"

struct lua_State;

namespace rch::lua {

// Where scripts come from: --script-dir entries, then the config dir, then
// the copies compiled into the binary.
class Resolver {
 public:
  struct Script {
    std::string name;       // relative name, "strategies/canary.lua"
    std::string origin;     // "builtin" or the file's path
    std::string chunkname;  // "@builtin/strategies/canary.lua" or "@/path/…"
    std::string source;
  };
  struct Listing {
    std::string name;
    std::string origin;
    bool overrides_builtin;
  };

  Resolver(std::vector<std::filesystem::path> script_dirs, std::filesystem::path config_dir);
  // Finds "strategies/canary.lua" (".lua" optional) along the search path.
  // Error only when a user file exists but cannot be read.
  Result<std::optional<Script>> find(std::string name) const;
  // Every name that resolves anywhere, with the file it resolves to.
  std::vector<Listing> list() const;
  // The search roots, for messages ("looked in …").
  std::string describe_search_path() const;

 private:
  std::vector<std::filesystem::path> roots_;
};

struct EngineOptions {
  std::vector<std::filesystem::path> script_dirs;
  std::filesystem::path config_dir;
  int verbosity = 0;  // -v count: traceback depth in error messages
  // Bound on concurrent blocking jobs (SSH, hashing, fsync); threads start as needed. The Lua
  // side keeps its own bounds ([defaults] parallel and probe_parallel), which this must not cap.
  std::size_t pool_threads = 1024;
};

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs `require(module).run(args)` as the main task, drives the loop until
  // every task has finished, and returns run's first result as JSON. A Lua
  // error returns Error("file:line: message", with traceback when verbose).
  Result<nlohmann::json> run_module(const std::string& module, const nlohmann::json& args);
  // Runs a Lua file as the main task with `...` = args (scripts and tests).
  Result<nlohmann::json> run_file(const std::filesystem::path& file, const std::vector<std::string>& args);

  const Resolver& resolver() const { return resolver_; }
  Executor& executor() { return executor_; }
  lua_State* state() { return L_; }
  int verbosity() const { return options_.verbosity; }

  // --- scheduler, used by the bindings (loop thread only) ---

  // Starts `fn` (at stack index) as a new task; returns its id.
  int spawn(lua_State* L, int fn_index, int nargs, std::string name);
  // The id of the task whose coroutine is L, or 0 when L is not a task.
  int task_of(lua_State* L) const;
  // Whether task `id` has ended (its results can be pushed at once).
  bool task_done(int id) const;
  void add_joiner(int target, int waiter);
  // Pushes the results of a finished task onto L: true, results… or false, err.
  int push_task_results(lua_State* L, int id);
  // Resumes task `id` with the values `push` leaves on its stack. Posted, so
  // it never runs inside another coroutine's resume.
  void resume_later(int id, std::function<int(lua_State*)> push);
  // Records what task `id` is about to yield for (diagnostics, stray-yield check).
  void set_waiting(int id, const char* api);
  std::size_t task_count() const { return tasks_.size(); }

 private:
  struct Task;
  void resume(int id, int nargs);
  void finish(Task& task, bool ok, int nresults);
  Result<nlohmann::json> run_main(std::function<int(lua_State*)> push_fn_and_args, int nargs);
  void install_require();

  EngineOptions options_;
  Resolver resolver_;
  Executor executor_;
  lua_State* L_ = nullptr;
  std::vector<std::unique_ptr<Task>> tasks_;       // index = id - 1; finished tasks kept until joined
  std::unordered_map<lua_State*, int> by_thread_;  // running coroutine -> task id
};

// The engine that owns L (stored in the registry at start-up).
Engine& engine_of(lua_State* L);

// Raises a Lua error unless L is a task's coroutine: yielding APIs need one.
int require_task(lua_State* L, const char* api);

}  // namespace rch::lua
