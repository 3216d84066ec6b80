// Module rch.ssh: libssh sessions for Lua. connect/exec/home run on the pool
// (libssh blocks) and yield the calling task; a session is used by one pool
// job at a time, and a job in flight keeps its session alive even if Lua
// drops the userdata.
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "core/log/log.hpp"
#include "core/ssh/quote.hpp"
#include "core/ssh/resolve.hpp"
#include "core/ssh/session.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

const char kSessionMeta[] = "rch.ssh.session";
const char kStreamMeta[] = "rch.ssh.stream";
// A Lua string must stay well below LuaJIT's 2 GiB limit.
constexpr lua_Number kMaxOutputLimit = 1024.0 * 1024 * 1024;

struct SessionBox {
  std::shared_ptr<SshSession> session;
  std::string label;  // user@host:port, for messages
  bool busy = false;
};

SessionBox& check_session(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  if (!box->session) throw Misuse("rch.ssh: session " + box->label + " is closed");
  if (box->busy) throw Misuse("rch.ssh: session " + box->label + " is already running a command in another task");
  return *box;
}

// The box is written by the completion: keep the userdata (arg 1) from being
// collected while a job on it is in flight.
int pin(lua_State* L) {
  lua_pushvalue(L, 1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void unpin(lua_State* L, int ref) { luaL_unref(L, LUA_REGISTRYINDEX, ref); }

// The result table: code, out, err, timed_out, stalled (seconds without
// progress, when that ended it), and out_truncated /
// err_truncated with max_output (the cap they were cut at).
int push_exec_result(lua_State* L, const ExecResult& r, std::size_t max_output) {
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, r.exit_code);
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, r.out.data(), r.out.size());
  lua_setfield(L, -2, "out");
  lua_pushlstring(L, r.err.data(), r.err.size());
  lua_setfield(L, -2, "err");
  lua_pushboolean(L, r.timed_out);
  lua_setfield(L, -2, "timed_out");
  if (r.stalled_s > 0) {
    lua_pushinteger(L, r.stalled_s);
    lua_setfield(L, -2, "stalled");
  }
  lua_pushboolean(L, r.out_truncated);
  lua_setfield(L, -2, "out_truncated");
  lua_pushboolean(L, r.err_truncated);
  lua_setfield(L, -2, "err_truncated");
  lua_pushnumber(L, static_cast<lua_Number>(max_output));
  lua_setfield(L, -2, "max_output");
  return 1;
}

// The debug log of one remote command: where, what (clipped), how it ended,
// how long it took; the output itself at trace. Runs on the pool thread.
void log_command(const SshSession& session, const std::string& what, const Result<ExecResult>& r,
                 std::chrono::steady_clock::time_point started, std::uintmax_t sent_bytes, int limit_s = 0) {
  if (!log::enabled(log::Level::debug)) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // One line: the command's whitespace runs (its script's newlines) folded to one space.
  std::string flat;
  for (const char c : what) {
    const bool space = c == '\n' || c == ' ' || c == '\t';
    if (!space || (!flat.empty() && flat.back() != ' ')) flat += space ? ' ' : c;
  }
  std::string line = session.where() + ": " + (flat.size() > 240 ? flat.substr(0, 240) + "…" : flat) + " -> ";
  if (!r.ok()) {
    line += "error: " + r.error();
  } else {
    line += r->timed_out ? std::string("timed out") : "exit " + std::to_string(r->exit_code);
    line += ", stdout " + std::to_string(r->out.size()) + " B, stderr " + std::to_string(r->err.size()) + " B";
  }
  char took[64];
  std::snprintf(took, sizeof took, " in %.3f s", secs);
  line += took;
  if (sent_bytes > 0 && secs > 0) {
    std::snprintf(took, sizeof took, "; sent %ju bytes (%.1f MB/s, limit %d s)", sent_bytes, sent_bytes / secs / 1e6,
                  limit_s);
    line += took;
  }
  log::debug(line);
  if (r.ok() && log::enabled(log::Level::trace)) {
    if (!r->out.empty()) log::trace(session.where() + " stdout: " + r->out.substr(0, 4096));
    if (!r->err.empty()) log::trace(session.where() + " stderr: " + r->err.substr(0, 4096));
  }
}

// The SshTarget fields of a connect/resolve table at index 1.
SshTarget check_target(lua_State* L, const char* api) {
  luaL_checktype(L, 1, LUA_TTABLE);
  SshTarget target;
  target.host = opt_string_field(L, 1, "host", "");
  if (target.host.empty()) throw Misuse(std::string(api) + ": host is required");
  target.port = static_cast<int>(opt_number_field(L, 1, "port", 22));
  target.user = opt_string_field(L, 1, "user", "");
  target.identity_file = opt_string_field(L, 1, "identity_file", "");
  target.certificate_file = opt_string_field(L, 1, "certificate_file", "");
  target.known_hosts_file = opt_string_field(L, 1, "known_hosts", "");
  target.ssh_config_file = opt_string_field(L, 1, "ssh_config", "");
  target.connect_timeout_s = static_cast<int>(opt_number_field(L, 1, "connect_timeout", 10));
  return target;
}

// connect{host=, port=, user=, identity_file=, certificate_file=, known_hosts=, ssh_config=,
//         host_key_policy="strict"|"accept-new", connect_timeout=,
//         max_output=bytes kept of each exec's stdout and stderr,
//         stall_timeout=seconds an upload may make no progress (0: none)}
//   -> session | nil, err, "transient"|"permanent" (only a transient failure is worth retrying)
int l_ssh_connect(lua_State* L) {
  SshTarget target = check_target(L, "rch.ssh.connect");
  const lua_Number max_output = opt_number_field(L, 1, "max_output", static_cast<lua_Number>(target.max_output_bytes));
  if (!(max_output >= 1 && max_output <= kMaxOutputLimit)) {
    throw Misuse("rch.ssh.connect: max_output must be between 1 and " + std::to_string(kMaxOutputLimit) + " bytes");
  }
  target.max_output_bytes = static_cast<std::size_t>(max_output);
  target.stall_timeout_s = static_cast<int>(opt_number_field(L, 1, "stall_timeout", target.stall_timeout_s));
  const std::string policy = opt_string_field(L, 1, "host_key_policy", "strict");
  if (policy == "strict")
    target.host_key_policy = HostKeyPolicy::strict;
  else if (policy == "accept-new")
    target.host_key_policy = HostKeyPolicy::accept_new;
  else
    throw Misuse("rch.ssh.connect: host_key_policy must be \"strict\" or \"accept-new\"");
  const std::string label =
      (target.user.empty() ? "" : target.user + "@") + target.host + ":" + std::to_string(target.port);
  struct Connected {
    Result<std::unique_ptr<SshSession>> session = make_error("not connected");
    ConnectFailure failure = ConnectFailure::permanent;
  };
  return yield_blocking<std::shared_ptr<Connected>>(
      L, "rch.ssh.connect",
      [target] {
        auto c = std::make_shared<Connected>();
        c->session = SshSession::connect(target, &c->failure);
        if (c->session.ok()) {
          log::debug("connected to " + c->session.value()->where() + " (host " + target.host + ", identity " +
                     (target.identity_file.empty() ? std::string("agent/default keys") : target.identity_file) +
                     ", known_hosts " +
                     (target.known_hosts_file.empty() ? std::string("~/.ssh/known_hosts") : target.known_hosts_file) +
                     "; " + c->session.value()->details() + ")");
        } else {
          log::debug("cannot connect to " + target.host + ": " + c->session.error());
        }
        return c;
      },
      [label](lua_State* co, std::shared_ptr<Connected>& c) {
        if (!c->session.ok()) {
          push_failure(co, c->session.error());
          lua_pushstring(co, c->failure == ConnectFailure::transient ? "transient" : "permanent");
          return 3;
        }
        auto* box = static_cast<SessionBox*>(lua_newuserdata(co, sizeof(SessionBox)));
        new (box) SessionBox{std::shared_ptr<SshSession>(std::move(c->session.value())), label, false};
        luaL_getmetatable(co, kSessionMeta);
        lua_setmetatable(co, -2);
        return 1;
      });
}

// resolve{host=, port=, user=, ssh_config=} -> {hostname, port, user, jump (nil:
// direct), address (nil: does not resolve)} | nil, err: what OpenSSH's client
// makes of the target (ssh -G), without connecting.
int l_ssh_resolve(lua_State* L) {
  SshTarget target = check_target(L, "rch.ssh.resolve");
  struct Resolved {
    Result<SshResolved> r = make_error("not resolved");
    std::string address;
  };
  return yield_blocking<std::shared_ptr<Resolved>>(
      L, "rch.ssh.resolve",
      [target] {
        auto out = std::make_shared<Resolved>();
        out->r = resolve_ssh_target(target);
        if (out->r.ok()) out->address = resolve_address(out->r->hostname);
        return out;
      },
      [](lua_State* co, std::shared_ptr<Resolved>& out) {
        if (!out->r.ok()) return push_failure(co, out->r.error());
        const SshResolved& r = out->r.value();
        lua_createtable(co, 0, 5);
        lua_pushstring(co, r.hostname.c_str());
        lua_setfield(co, -2, "hostname");
        lua_pushinteger(co, static_cast<lua_Integer>(r.port));
        lua_setfield(co, -2, "port");
        lua_pushstring(co, r.user.c_str());
        lua_setfield(co, -2, "user");
        if (!r.jump.empty()) {
          std::string hops;
          for (const auto& h : r.jump) hops += (hops.empty() ? "" : ",") + h;
          lua_pushstring(co, hops.c_str());
          lua_setfield(co, -2, "jump");
        }
        if (!out->address.empty()) {
          lua_pushstring(co, out->address.c_str());
          lua_setfield(co, -2, "address");
        }
        return 1;
      });
}

// session:exec(argv | command [, {timeout=, stdin=}])
//   -> {code=, out=, err=, timed_out=, out_truncated=, err_truncated=, max_output=} | nil, err
// A table argv is quoted word by word (the only way to build remote commands
// from values); a string is passed to the remote shell as written.
int l_ssh_exec(lua_State* L) {
  SessionBox& box = check_session(L);
  std::string command;
  if (lua_type(L, 2) == LUA_TTABLE) {
    command = shell_join(check_string_list(L, 2));
  } else {
    command = check_std_string(L, 2);
  }
  const int timeout = static_cast<int>(opt_number_field(L, 3, "timeout", 300));
  const std::string input = opt_string_field(L, 3, "stdin", "");
  box.busy = true;
  auto session = box.session;
  auto* boxp = &box;
  const int ref = pin(L);
  return yield_blocking<Result<ExecResult>>(
      L, "rch.ssh.exec",
      [session, command, timeout, input] {
        const auto started = std::chrono::steady_clock::now();
        auto r = session->exec(command, timeout, input);
        log_command(*session, command, r, started, 0);
        return r;
      },
      [boxp, ref, session](lua_State* co, Result<ExecResult>& r) {
        unpin(co, ref);
        boxp->busy = false;
        if (!r.ok()) return push_failure(co, r.error());  // session errors name user@host:port
        return push_exec_result(co, *r, session->max_output_bytes());
      });
}

// session:upload(local_path, argv, {timeout=, progress=}) -> the result of exec | nil, err
// Streams the local file into stdin of the remote command built from argv;
// `progress` (rch.ssh.progress()) reads the bytes sent, and the size, meanwhile.
int l_ssh_upload(lua_State* L) {
  SessionBox& box = check_session(L);
  const std::string path = check_std_string(L, 2);
  const std::string command = shell_join(check_string_list(L, 3));
  const int timeout = static_cast<int>(opt_number_field(L, 4, "timeout", 600));
  ProgressBox progress = opt_progress_field(L, 4);
  box.busy = true;
  auto session = box.session;
  auto* boxp = &box;
  const int ref = pin(L);
  return yield_blocking<Result<ExecResult>>(
      L, "rch.ssh.upload",
      [session, command, path, timeout, progress] {
        const auto started = std::chrono::steady_clock::now();
        std::error_code ec;
        const auto size = std::filesystem::file_size(path, ec);
        std::function<void(std::uint64_t)> on_sent;
        if (progress) {
          progress->total.store(ec ? 0 : size, std::memory_order_relaxed);
          on_sent = [progress](std::uint64_t sent) { progress->done.store(sent, std::memory_order_relaxed); };
        }
        auto r = session->exec_with_input_file(command, path, timeout, on_sent);
        log_command(*session, command, r, started, ec ? 0 : size, timeout);
        return r;
      },
      [boxp, ref, session](lua_State* co, Result<ExecResult>& r) {
        unpin(co, ref);
        boxp->busy = false;
        if (!r.ok()) return push_failure(co, r.error());  // session errors name user@host:port
        return push_exec_result(co, *r, session->max_output_bytes());
      });
}

// session:hold(argv, {timeout=}) -> {held=true, id=, line=} | the result of
// exec with held=false | nil, err. Starts the command and, once it printed a
// line, leaves it running beside the session's other commands until
// session:release(id), the session's close or a dropped connection.
int l_ssh_hold(lua_State* L) {
  SessionBox& box = check_session(L);
  const std::string command = shell_join(check_string_list(L, 2));
  const int timeout = static_cast<int>(opt_number_field(L, 3, "timeout", 300));
  box.busy = true;
  auto session = box.session;
  auto* boxp = &box;
  const int ref = pin(L);
  return yield_blocking<Result<SshSession::Hold>>(
      L, "rch.ssh.hold",
      [session, command, timeout] {
        const auto started = std::chrono::steady_clock::now();
        auto r = session->hold(command, timeout);
        if (r.ok() && r->id > 0) {
          log::debug(session->where() + ": holding " + std::to_string(r->id) + ": " + r->first_line);
        } else {
          log_command(*session, command, r.ok() ? Result<ExecResult>(r->ended) : Result<ExecResult>(Error{r.error()}),
                      started, 0);
        }
        return r;
      },
      [boxp, ref, session](lua_State* co, Result<SshSession::Hold>& r) {
        unpin(co, ref);
        boxp->busy = false;
        if (!r.ok()) return push_failure(co, r.error());
        if (r->id == 0) {
          push_exec_result(co, r->ended, session->max_output_bytes());
          lua_pushboolean(co, 0);
          lua_setfield(co, -2, "held");
          return 1;
        }
        lua_createtable(co, 0, 3);
        lua_pushboolean(co, 1);
        lua_setfield(co, -2, "held");
        lua_pushinteger(co, r->id);
        lua_setfield(co, -2, "id");
        lua_pushlstring(co, r->first_line.data(), r->first_line.size());
        lua_setfield(co, -2, "line");
        return 1;
      });
}

// session:holding(id) -> whether the held command still runs
int l_ssh_holding(lua_State* L) {
  SessionBox& box = check_session(L);
  lua_pushboolean(L, box.session->holding(static_cast<int>(luaL_checkinteger(L, 2))));
  return 1;
}

// session:release(id): ends a held command; a closed session has none left.
int l_ssh_release(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  if (!box->session) return 0;
  if (box->busy) throw Misuse("rch.ssh: cannot release on " + box->label + " while a command runs on it");
  box->session->release(static_cast<int>(luaL_checkinteger(L, 2)));
  return 0;
}

// A command whose output is read while it runs (session:exec_stream). The
// pool job appends chunks and, at the end, the result; the reading task
// waits for them in stream:read(). What is queued is bounded by the cap of
// each stream (the session hands over no byte past it).
struct StreamState {
  std::mutex mutex;
  std::deque<std::pair<bool, std::string>> chunks;  // is_stderr, bytes
  std::optional<Result<ExecResult>> result;
  int waiting = 0;  // the task blocked in read(), 0: none
};

struct StreamBox {
  std::shared_ptr<StreamState> state;
  std::size_t max_output = 0;
  bool finished = false;  // read() returned the result
};

// Pushes what read() returns next: "out"|"err", bytes; or "done", result |
// nil, err once no chunk is left. The state's mutex is taken only to pop (a
// Lua error while pushing must not leave it locked); the result, once set,
// never changes.
int push_stream_item(lua_State* L, StreamBox& box) {
  std::optional<std::pair<bool, std::string>> chunk;
  {
    std::lock_guard lock(box.state->mutex);
    if (!box.state->chunks.empty()) {
      chunk = std::move(box.state->chunks.front());
      box.state->chunks.pop_front();
    }
  }
  if (chunk) {
    lua_pushstring(L, chunk->first ? "err" : "out");
    lua_pushlstring(L, chunk->second.data(), chunk->second.size());
    return 2;
  }
  box.finished = true;
  const Result<ExecResult>& r = *box.state->result;
  if (!r.ok()) return push_failure(L, r.error());
  lua_pushstring(L, "done");
  push_exec_result(L, *r, box.max_output);
  return 2;
}

// Wakes the task waiting in read(), if any (any thread, state->mutex held).
// The stream box is alive then: it is on that task's stack.
void wake_reader(Engine& engine, StreamState& state, StreamBox* box) {
  if (state.waiting == 0) return;
  const int task = state.waiting;
  state.waiting = 0;
  engine.resume_later(task, [box](lua_State* co) { return push_stream_item(co, *box); });
}

// session:exec_stream(argv | command [, {timeout=}]) -> stream
// Starts the command (stdin /dev/null, guard, cap and timeout as exec) and
// returns at once; stream:read() returns its output while it runs. The
// session is busy until the command has ended.
int l_ssh_exec_stream(lua_State* L) {
  SessionBox& box = check_session(L);
  const std::string command =
      lua_type(L, 2) == LUA_TTABLE ? shell_join(check_string_list(L, 2)) : check_std_string(L, 2);
  const int timeout = static_cast<int>(opt_number_field(L, 3, "timeout", 300));
  Engine& engine = engine_of(L);
  auto state = std::make_shared<StreamState>();
  auto* stream = static_cast<StreamBox*>(lua_newuserdata(L, sizeof(StreamBox)));
  new (stream) StreamBox{state, box.session->max_output_bytes(), false};
  luaL_getmetatable(L, kStreamMeta);
  lua_setmetatable(L, -2);
  box.busy = true;
  auto session = box.session;
  auto* boxp = &box;
  lua_pushvalue(L, 1);
  const int ref = luaL_ref(L, LUA_REGISTRYINDEX);  // the session box outlives the job
  engine.executor().run_blocking([&engine, state, stream, session, command, timeout, boxp, ref] {
    const auto started = std::chrono::steady_clock::now();
    auto r = session->exec_streaming(command, timeout, [&](bool is_stderr, std::string_view bytes) {
      std::lock_guard lock(state->mutex);
      if (!state->chunks.empty() && state->chunks.back().first == is_stderr) {
        state->chunks.back().second.append(bytes);  // not read yet: one chunk
      } else {
        state->chunks.emplace_back(is_stderr, std::string(bytes));
      }
      wake_reader(engine, *state, stream);
    });
    log_command(*session, command, r, started, 0);
    auto result = std::make_shared<Result<ExecResult>>(std::move(r));
    return Executor::Completion([&engine, state, stream, boxp, ref, result] {
      luaL_unref(engine.state(), LUA_REGISTRYINDEX, ref);
      boxp->busy = false;
      std::lock_guard lock(state->mutex);
      state->result = std::move(*result);
      wake_reader(engine, *state, stream);
    });
  });
  return 1;
}

// stream:read() -> "out"|"err", bytes (in arrival order, within the cap) |
// "done", result (as exec's) | nil, err (the connection was lost). Yields
// until one of them is there.
int l_stream_read(lua_State* L) {
  auto* box = static_cast<StreamBox*>(luaL_checkudata(L, 1, kStreamMeta));
  if (box->finished) throw Misuse("rch.ssh: stream:read() after the command ended");
  const int task = require_task(L, "rch.ssh.stream:read");  // may raise: before the lock
  {
    std::lock_guard lock(box->state->mutex);
    if (box->state->waiting != 0) throw Misuse("rch.ssh: the stream is already read by another task");
    if (box->state->chunks.empty() && !box->state->result) {
      box->state->waiting = task;
      return lua_yield(L, 0);
    }
  }
  return push_stream_item(L, *box);
}

int l_stream_gc(lua_State* L) {
  auto* box = static_cast<StreamBox*>(luaL_checkudata(L, 1, kStreamMeta));
  box->~StreamBox();
  return 0;
}

// session:home() -> the remote $HOME, resolved on the worker
int l_ssh_home(lua_State* L) {
  SessionBox& box = check_session(L);
  box.busy = true;
  auto session = box.session;
  auto* boxp = &box;
  const int ref = pin(L);
  return yield_blocking<Result<std::string>>(
      L, "rch.ssh.home",
      [session]() -> Result<std::string> {
        const std::string& home = session->remote_home();
        if (home.empty()) return make_error("cannot resolve the remote $HOME on " + session->where());
        return home;
      },
      [boxp, ref](lua_State* co, Result<std::string>& r) {
        unpin(co, ref);
        boxp->busy = false;
        if (!r.ok()) return push_failure(co, r.error());  // session errors name user@host:port
        lua_pushlstring(co, r->data(), r->size());
        return 1;
      });
}

int l_ssh_alive(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  lua_pushboolean(L, box->session && box->session->alive());
  return 1;
}

int l_ssh_close(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  if (box->busy) throw Misuse("rch.ssh: cannot close " + box->label + " while a command runs on it");
  box->session.reset();
  return 0;
}

int l_ssh_label(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  lua_pushstring(L, box->label.c_str());
  return 1;
}

int l_ssh_gc(lua_State* L) {
  auto* box = static_cast<SessionBox*>(luaL_checkudata(L, 1, kSessionMeta));
  box->~SessionBox();
  return 0;
}

// quote(s) -> s quoted for a POSIX shell; join(argv) -> quoted command line
int l_ssh_quote(lua_State* L) {
  lua_pushstring(L, shell_quote(check_std_string(L, 1)).c_str());
  return 1;
}

int l_ssh_join(lua_State* L) {
  lua_pushstring(L, shell_join(check_string_list(L, 1)).c_str());
  return 1;
}

}  // namespace

int luaopen_rch_ssh(lua_State* L) {
  static const luaL_Reg methods[] = {
      {"exec", guarded<l_ssh_exec>},
      {"upload", guarded<l_ssh_upload>},
      {"home", guarded<l_ssh_home>},
      {"exec_stream", guarded<l_ssh_exec_stream>},
      {"hold", guarded<l_ssh_hold>},
      {"holding", guarded<l_ssh_holding>},
      {"release", guarded<l_ssh_release>},
      {"alive", guarded<l_ssh_alive>},
      {"close", guarded<l_ssh_close>},
      {"label", guarded<l_ssh_label>},
      {nullptr, nullptr},
  };
  register_type(L, kSessionMeta, l_ssh_gc, methods);

  static const luaL_Reg stream_methods[] = {
      {"read", guarded<l_stream_read>},
      {nullptr, nullptr},
  };
  register_type(L, kStreamMeta, l_stream_gc, stream_methods);

  static const luaL_Reg functions[] = {
      {"connect", guarded<l_ssh_connect>}, {"resolve", guarded<l_ssh_resolve>},   {"quote", guarded<l_ssh_quote>},
      {"join", guarded<l_ssh_join>},       {"progress", guarded<l_progress_new>}, {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
