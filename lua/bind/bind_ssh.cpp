// Module rch.ssh: libssh sessions for Lua. connect/exec/home run on the pool
// (libssh blocks) and yield the calling task; a session is used by one pool
// job at a time, and a job in flight keeps its session alive even if Lua
// drops the userdata.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "core/log/log.hpp"
#include "core/ssh/quote.hpp"
#include "core/ssh/session.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

const char kSessionMeta[] = "rch.ssh.session";
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
                 std::chrono::steady_clock::time_point started, std::uintmax_t sent_bytes) {
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
    std::snprintf(took, sizeof took, "; sent %ju bytes (%.1f MB/s)", sent_bytes, sent_bytes / secs / 1e6);
    line += took;
  }
  log::debug(line);
  if (r.ok() && log::enabled(log::Level::trace)) {
    if (!r->out.empty()) log::trace(session.where() + " stdout: " + r->out.substr(0, 4096));
    if (!r->err.empty()) log::trace(session.where() + " stderr: " + r->err.substr(0, 4096));
  }
}

// connect{host=, port=, user=, identity_file=, known_hosts=, ssh_config=,
//         host_key_policy="strict"|"accept-new", connect_timeout=,
//         max_output=bytes kept of each exec's stdout and stderr,
//         stall_timeout=seconds an upload may make no progress (0: none)} -> session | nil, err
int l_ssh_connect(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  SshTarget target;
  target.host = opt_string_field(L, 1, "host", "");
  if (target.host.empty()) throw Misuse("rch.ssh.connect: host is required");
  target.port = static_cast<int>(opt_number_field(L, 1, "port", 22));
  target.user = opt_string_field(L, 1, "user", "");
  target.identity_file = opt_string_field(L, 1, "identity_file", "");
  target.known_hosts_file = opt_string_field(L, 1, "known_hosts", "");
  target.ssh_config_file = opt_string_field(L, 1, "ssh_config", "");
  target.connect_timeout_s = static_cast<int>(opt_number_field(L, 1, "connect_timeout", 10));
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
  using Connected = Result<std::unique_ptr<SshSession>>;
  return yield_blocking<std::shared_ptr<Connected>>(
      L, "rch.ssh.connect",
      [target] {
        auto connected = std::make_shared<Connected>(SshSession::connect(target));
        if (connected->ok()) {
          log::debug("connected to " + connected->value()->where() + " (host " + target.host + ", identity " +
                     (target.identity_file.empty() ? std::string("agent/default keys") : target.identity_file) +
                     ", known_hosts " +
                     (target.known_hosts_file.empty() ? std::string("~/.ssh/known_hosts") : target.known_hosts_file) +
                     ")");
        } else {
          log::debug("cannot connect to " + target.host + ": " + connected->error());
        }
        return connected;
      },
      [label](lua_State* co, std::shared_ptr<Connected>& r) {
        if (!r->ok()) return push_failure(co, r->error());
        auto* box = static_cast<SessionBox*>(lua_newuserdata(co, sizeof(SessionBox)));
        new (box) SessionBox{std::shared_ptr<SshSession>(std::move(r->value())), label, false};
        luaL_getmetatable(co, kSessionMeta);
        lua_setmetatable(co, -2);
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
        log_command(*session, command, r, started, ec ? 0 : size);
        return r;
      },
      [boxp, ref, session](lua_State* co, Result<ExecResult>& r) {
        unpin(co, ref);
        boxp->busy = false;
        if (!r.ok()) return push_failure(co, r.error());  // session errors name user@host:port
        return push_exec_result(co, *r, session->max_output_bytes());
      });
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
      {"alive", guarded<l_ssh_alive>},
      {"close", guarded<l_ssh_close>},
      {"label", guarded<l_ssh_label>},
      {nullptr, nullptr},
  };
  luaL_newmetatable(L, kSessionMeta);
  lua_pushcfunction(L, l_ssh_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  set_functions(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg functions[] = {
      {"connect", guarded<l_ssh_connect>},
      {"quote", guarded<l_ssh_quote>},
      {"join", guarded<l_ssh_join>},
      {"progress", guarded<l_progress_new>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
