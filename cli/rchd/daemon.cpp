// The rchd daemon: one thread, one poll() loop over the signalfd, the
// listening socket, the clients and the notify pipes of builds being started.
// Requests never block the loop: a drain only sets the marker (the client
// polls status), and a build's job runs in its own supervisor process.
#include "cli/rchd/daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/rchd/job.hpp"
#include "cli/rchd/notify.hpp"
#include "cli/rchd/pidfile.hpp"
#include "core/agent/agent.hpp"
#include "core/agent/daemon_protocol.hpp"
#include "core/store/dirs.hpp"
#include "core/util/time.hpp"
#include "core/util/unique_fd.hpp"
#include "core/version/build_info.hpp"

namespace rch::rchd {
namespace fs = std::filesystem;

namespace {

using steady = std::chrono::steady_clock;

constexpr size_t k_max_line = 64 * 1024;  // a request longer than this is refused
constexpr size_t k_max_clients = 128;     // beyond this, new connections wait in the backlog
constexpr int k_listen_backlog = 64;
// After shutdown/SIGTERM: time to deliver pending replies before exiting.
constexpr std::chrono::seconds k_exit_grace{3};

std::string errno_text() { return std::strerror(errno); }

// One log line per write(), so lines from the daemon and its supervisors do
// not interleave inside a line.
void log_line(const std::string& message) {
  const std::string line = iso8601_utc_now() + " rchd[" + std::to_string(::getpid()) + "]: " + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

std::string builds_text(int n) { return std::to_string(n) + (n == 1 ? " build" : " builds"); }

std::string error_reply(std::string message) {
  return daemon_protocol::encode(daemon_protocol::Refusal{std::move(message), {}});
}

// Stdio must be open: a pipe or socket landing on fd 1 or 2 would receive
// log lines (and jobs would write into it).
void ensure_std_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0 && null_fd != fd) {
      ::dup2(null_fd, fd);
      ::close(null_fd);
    }
  }
}

// The signals the loop reads from its signalfd. Blocked before anything else
// (and before daemonizing), so a SIGTERM during startup is not lost: it ends
// the daemon as soon as the loop runs.
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
  return set;
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

Result<sockaddr_un> socket_address(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string s = path.string();
  if (s.size() >= sizeof addr.sun_path) {
    return make_error("socket path " + s + " is longer than " + std::to_string(sizeof addr.sun_path - 1) +
                      " bytes (use --socket with a shorter path)");
  }
  std::memcpy(addr.sun_path, s.c_str(), s.size() + 1);
  return addr;
}

// Binds the socket, mode 0600. A socket file left by a daemon that was killed
// is replaced; one that another daemon still answers on is not.
Result<UniqueFd> listen_on(const fs::path& path, struct stat& bound) {
  auto addr = socket_address(path);
  if (!addr) return Error{addr.error()};
  if (auto r = make_dirs(path.parent_path(), 0755); !r) return Error{r.error()};

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return make_error(path.string() + " exists and is not a socket; not replacing it");
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) {
      return make_error("another rchd is listening on " + path.string());
    }
    log_line("removing stale socket " + path.string());
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return make_error("cannot remove stale socket " + path.string() + ": " + errno_text());
    }
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return make_error("cannot create a Unix socket: " + errno_text());
  // The umask makes the socket 0600 from its first moment; a chmod after
  // bind would leave a window in which others could connect.
  const mode_t old_umask = ::umask(0177);
  const int bind_rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bind_rc != 0) return make_error("cannot bind " + path.string() + ": " + std::strerror(bind_errno));
  if (::listen(fd.get(), k_listen_backlog) != 0 || ::lstat(path.c_str(), &bound) != 0) {
    const std::string err = errno_text();
    ::unlink(path.c_str());
    return make_error("cannot listen on " + path.string() + ": " + err);
  }
  return fd;
}

struct Client {
  UniqueFd fd;
  std::string in;
  std::string out;
  bool eof = false;      // peer sent EOF (or its line was too long): reply, then close
  bool waiting = false;  // its build is starting; its later lines wait their turn
  bool broken = false;   // the connection failed: drop it
};

// A build whose job has not reported yet whether it started.
struct PendingBuild {
  uint64_t job = 0;
  uint64_t client = 0;  // may be gone by the time the job reports
  UniqueFd notify;
  std::string buffer;
};

class Daemon {
 public:
  Daemon(const DaemonOptions& options, PidFile pidfile, UniqueFd listener, const struct stat& socket_id,
         UniqueFd signals)
      : options_(options),
        pidfile_(std::move(pidfile)),
        agent_(daemon_agent_root(options.root)),
        listener_(std::move(listener)),
        socket_id_(socket_id),
        signals_(std::move(signals)) {}

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // The socket goes first (new clients get "not running" at once), the
  // pidfile last (PidFile's destructor), so a new daemon can start as soon
  // as the pidfile is gone.
  ~Daemon() { close_listener(); }

  static Result<std::unique_ptr<Daemon>> start(const DaemonOptions& options, const sigset_t& handled);

  int serve();

 private:
  void close_listener();
  void on_signal();
  void reap_supervisors();
  void accept_clients();
  void read_client(uint64_t id);
  void flush_client(Client& c);
  void process_lines(uint64_t id);
  void send_reply(Client& c, const std::string& reply);
  // The reply, or nullopt when the reply comes later (a build being started).
  std::optional<std::string> handle(uint64_t id, const std::string& line);
  std::string cmd_status();
  std::string cmd_drain(const daemon_protocol::Drain& req);
  std::string cmd_undrain();
  std::string cmd_shutdown(const daemon_protocol::Shutdown& req);
  std::optional<std::string> cmd_build(uint64_t id, daemon_protocol::Build& req);
  void read_pending(size_t index);
  void begin_stop(const std::string& why);

  DaemonOptions options_;
  PidFile pidfile_;
  Agent agent_;
  UniqueFd listener_;
  struct stat socket_id_;
  UniqueFd signals_;

  std::map<uint64_t, Client> clients_;
  uint64_t next_client_ = 1;
  std::vector<PendingBuild> pending_;
  std::map<pid_t, uint64_t> supervisors_;  // supervisor pid -> job id
  uint64_t next_job_ = 1;
  bool stopping_ = false;
  steady::time_point stop_deadline_{};
};

std::string cwd_text(const std::string& cwd) { return cwd.empty() ? std::string("/") : cwd; }

Result<std::unique_ptr<Daemon>> Daemon::start(const DaemonOptions& options, const sigset_t& handled) {
  // Modes by the table in the README, whatever the umask: the root is
  // readable (it holds bin/ and versions/ under $RCH_HOME), the agent's state private.
  if (auto r = make_trusted_dirs(options.root, 0755); !r) return Error{r.error()};
  if (auto r = make_dirs(options.pidfile.parent_path(), 0755); !r) return Error{r.error()};

  auto pidfile = PidFile::acquire(options.pidfile);
  if (!pidfile) return Error{pidfile.error()};
  if (pidfile->stale_pid() > 0) {
    log_line("took over pidfile " + options.pidfile.string() + " of pid " + std::to_string(pidfile->stale_pid()) +
             ", which is no longer running");
  }

  const fs::path agent_root = daemon_agent_root(options.root);
  if (auto r = make_dirs(agent_root, 0700); !r) return Error{r.error()};
  // Draining is a state of a running daemon: a restart (the end of an
  // update) must accept builds again even though the previous daemon exited
  // while draining. Jobs it left running still hold their leases.
  Agent agent(agent_root);
  if (agent.draining()) {
    if (auto r = agent.undrain(); !r) return Error{r.error()};
    log_line("cleared the drain marker left by the previous daemon");
  }

  struct stat socket_id {};
  auto listener = listen_on(options.socket, socket_id);
  if (!listener) return Error{listener.error()};

  UniqueFd signals(::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals.valid()) {
    ::unlink(options.socket.c_str());
    return make_error("cannot create a signalfd: " + errno_text());
  }
  auto daemon =
      std::make_unique<Daemon>(options, std::move(*pidfile), std::move(*listener), socket_id, std::move(signals));
  log_line(std::string("rchd ") + build_version() + " listening on " + options.socket.string() + " (root " +
           options.root.string() + ", leases in " + agent_root.string() + ")");
  return daemon;
}

void Daemon::close_listener() {
  if (!listener_.valid()) return;
  listener_.reset();
  // Only our own socket: someone may have replaced the path meanwhile.
  struct stat st {};
  if (::lstat(options_.socket.c_str(), &st) == 0 && same_file(st, socket_id_)) ::unlink(options_.socket.c_str());
}

void Daemon::begin_stop(const std::string& why) {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ = steady::now() + k_exit_grace;
  close_listener();
  (void)notify_systemd("STOPPING=1");  // under systemd (Type=notify): the stop is ours, not a crash
  const int active = agent_.active_leases();
  log_line(
      "shutting down (" + why + ")" +
      (active > 0 ? "; leaving " + builds_text(active) + " running, holding leases until they end" : std::string()));
}

int Daemon::serve() {
  enum class Kind { signals, listener, client, pending };
  std::vector<pollfd> fds;
  std::vector<std::pair<Kind, uint64_t>> what;
  while (true) {
    if (stopping_) {
      bool flushed = pending_.empty();
      for (const auto& [id, c] : clients_) flushed = flushed && c.out.empty();
      if (flushed || steady::now() >= stop_deadline_) break;
    }
    fds.clear();
    what.clear();
    fds.push_back({signals_.get(), POLLIN, 0});
    what.emplace_back(Kind::signals, 0);
    if (listener_.valid() && clients_.size() < k_max_clients) {
      fds.push_back({listener_.get(), POLLIN, 0});
      what.emplace_back(Kind::listener, 0);
    }
    for (const auto& [id, c] : clients_) {
      short events = 0;
      if (!stopping_ && !c.eof && !c.waiting) events |= POLLIN;
      if (!c.out.empty()) events |= POLLOUT;
      // A client waiting for its build is still polled, for POLLHUP, unless
      // it already hung up: POLLHUP would then fire on every round.
      if (events == 0 && c.eof) continue;
      fds.push_back({c.fd.get(), events, 0});
      what.emplace_back(Kind::client, id);
    }
    for (size_t i = 0; i < pending_.size(); ++i) {
      fds.push_back({pending_[i].notify.get(), POLLIN, 0});
      what.emplace_back(Kind::pending, i);
    }

    int timeout = -1;
    if (stopping_) {
      timeout = static_cast<int>(std::max<long long>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(stop_deadline_ - steady::now()).count()));
    }
    if (::poll(fds.data(), fds.size(), timeout) < 0) {
      if (errno == EINTR) continue;
      log_line("poll failed: " + errno_text());
      return 1;
    }

    // Pending entries are removed by index, so handle them from the back.
    for (size_t k = fds.size(); k-- > 0;) {
      if (fds[k].revents == 0) continue;
      const auto [kind, id] = what[k];
      switch (kind) {
        case Kind::signals:
          on_signal();
          break;
        case Kind::listener:
          accept_clients();
          break;
        case Kind::client: {
          auto it = clients_.find(id);
          if (it == clients_.end()) break;
          if (fds[k].revents & POLLOUT) flush_client(it->second);
          if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) read_client(id);
          break;
        }
        case Kind::pending:
          read_pending(id);
          break;
      }
    }

    for (auto it = clients_.begin(); it != clients_.end();) {
      const Client& c = it->second;
      const bool done = c.broken || (c.eof && !c.waiting && c.out.empty());
      it = done ? clients_.erase(it) : std::next(it);
    }
  }
  if (!supervisors_.empty()) reap_supervisors();
  log_line("exited cleanly");
  return 0;
}

void Daemon::on_signal() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGCHLD) {
      reap_supervisors();
    } else {
      begin_stop(std::string("received SIG") + ::sigabbrev_np(static_cast<int>(info.ssi_signo)) + " from pid " +
                 std::to_string(info.ssi_pid));
    }
  }
}

// Supervisors exit with their job's status; the daemon only logs it.
void Daemon::reap_supervisors() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    auto it = supervisors_.find(pid);
    if (it == supervisors_.end()) continue;
    const std::string job = "job " + std::to_string(it->second);
    supervisors_.erase(it);
    if (WIFSIGNALED(status)) {
      log_line(job + ": supervisor killed by signal " + std::to_string(WTERMSIG(status)));
    } else if (WEXITSTATUS(status) == k_supervisor_refused) {
      log_line(job + ": refused (draining)");
    } else if (WEXITSTATUS(status) == k_supervisor_cannot_start) {
      log_line(job + ": could not start");
    } else {
      log_line(job + ": finished with status " + std::to_string(WEXITSTATUS(status)));
    }
  }
}

void Daemon::accept_clients() {
  while (clients_.size() < k_max_clients) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_line("accept failed: " + errno_text());
      return;
    }
    Client c;
    c.fd = std::move(fd);
    clients_.emplace(next_client_++, std::move(c));
  }
}

void Daemon::read_client(uint64_t id) {
  Client& c = clients_.at(id);
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > k_max_line && c.in.find('\n') == std::string::npos) break;
      continue;
    }
    if (n == 0) {
      // A line without its newline was cut off mid-way: it is not a request.
      c.eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) c.broken = true;
    break;
  }
  if (c.broken) return;
  process_lines(id);
  if (!c.waiting && c.in.size() > k_max_line && c.in.find('\n') == std::string::npos) {
    send_reply(c, error_reply("request longer than " + std::to_string(k_max_line) + " bytes"));
    c.in.clear();
    c.eof = true;  // the rest of that line would be read as new requests
  }
}

void Daemon::flush_client(Client& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    c.broken = true;  // the client left before its reply: nothing more to do for it
    c.out.clear();
    return;
  }
}

void Daemon::send_reply(Client& c, const std::string& reply) {
  c.out += reply;
  c.out += '\n';
  flush_client(c);
}

void Daemon::process_lines(uint64_t id) {
  while (!stopping_) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    Client& c = it->second;
    if (c.waiting || c.broken) return;
    const size_t nl = c.in.find('\n');
    if (nl == std::string::npos) return;
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (nl > k_max_line) {
      send_reply(c, error_reply("request longer than " + std::to_string(k_max_line) + " bytes"));
      continue;
    }
    if (auto reply = handle(id, line)) send_reply(clients_.at(id), *reply);
  }
}

std::optional<std::string> Daemon::handle(uint64_t id, const std::string& line) {
  auto req = daemon_protocol::parse_request(line);
  if (!req) return error_reply(req.error());
  if (std::holds_alternative<daemon_protocol::Status>(*req)) return cmd_status();
  if (auto* drain = std::get_if<daemon_protocol::Drain>(&*req)) return cmd_drain(*drain);
  if (std::holds_alternative<daemon_protocol::Undrain>(*req)) return cmd_undrain();
  if (auto* shutdown = std::get_if<daemon_protocol::Shutdown>(&*req)) return cmd_shutdown(*shutdown);
  return cmd_build(id, std::get<daemon_protocol::Build>(*req));
}

std::string Daemon::cmd_status() {
  const AgentHealth h = agent_.health();
  daemon_protocol::StatusReply reply{::getpid(),
                                     build_version(),
                                     h.draining,
                                     h.active_builds,
                                     options_.root.string(),
                                     agent_.root().string(),
                                     static_cast<long long>(h.disk_free_mb),
                                     {}};
  if (!h.ok) reply.agent_error = h.error;
  return daemon_protocol::encode(reply);
}

std::string Daemon::cmd_drain(const daemon_protocol::Drain& req) {
  // The waiting is the client's (it polls status), so the daemon never
  // blocks; the timeout is only recorded in the log.
  if (auto r = agent_.set_draining(); !r) return error_reply("cannot drain: " + r.error());
  const int active = agent_.active_leases();
  log_line("draining: " + builds_text(active) + " active" +
           (req.timeout ? ", client waits up to " + std::to_string(*req.timeout) + "s" : std::string()));
  return daemon_protocol::encode(daemon_protocol::DrainReply{true, active});
}

std::string Daemon::cmd_undrain() {
  if (auto r = agent_.undrain(); !r) return error_reply("cannot undrain: " + r.error());
  log_line("accepting builds again");
  return daemon_protocol::encode(daemon_protocol::DrainReply{false, agent_.active_leases()});
}

std::string Daemon::cmd_shutdown(const daemon_protocol::Shutdown& req) {
  const int active = agent_.active_leases();
  if (active > 0 && !req.force) {
    return daemon_protocol::encode(daemon_protocol::Refusal{"refusing to shut down: builds active (" +
                                                                std::to_string(active) +
                                                                "); drain and wait for them, or send \"force\":true",
                                                            active});
  }
  begin_stop(req.force ? "shutdown requested with force" : "shutdown requested");
  return daemon_protocol::encode(daemon_protocol::ShutdownReply{::getpid(), active});
}

std::optional<std::string> Daemon::cmd_build(uint64_t id, daemon_protocol::Build& req) {
  // Cheap early answer; the exact one is run_job's, reported by the job.
  if (agent_.draining()) return error_reply("draining");
  const std::string& dir = req.cwd;
  auto started = start_build(agent_.root(), req.argv, dir);
  if (!started) return error_reply("cannot start build: " + started.error());
  const uint64_t job = next_job_++;
  supervisors_.emplace(started->supervisor, job);
  std::string argv_text;
  for (const auto& a : req.argv) argv_text += (argv_text.empty() ? "" : " ") + a;
  log_line("job " + std::to_string(job) + " (supervisor pid " + std::to_string(started->supervisor) + ") in " +
           cwd_text(dir) + ": " + argv_text);
  clients_.at(id).waiting = true;
  pending_.push_back(PendingBuild{job, id, std::move(started->notify), {}});
  return std::nullopt;
}

void Daemon::read_pending(size_t index) {
  PendingBuild& p = pending_[index];
  char buf[512];
  // "S" is final at once. A refusal is answered only at EOF, when the
  // supervisor has exited and so released the lease: after "refused" the
  // client must not still see the build counted.
  while (p.buffer.rfind("S\n", 0) != 0) {
    ssize_t n = ::read(p.notify.get(), buf, sizeof buf);
    if (n > 0) {
      p.buffer.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;  // more to come
    } else {
      break;  // EOF (or a broken pipe): the supervisor is gone
    }
  }
  std::string reply;
  const size_t nl = p.buffer.find('\n');
  const std::string line = nl == std::string::npos ? std::string() : p.buffer.substr(0, nl);
  if (line == "S") {
    reply = daemon_protocol::encode(daemon_protocol::BuildReply{p.job});
  } else if (!line.empty() && line[0] == 'E') {
    const std::string message = line.substr(1);
    reply = error_reply(message == k_job_refused_draining ? std::string("draining") : message);
    log_line("job " + std::to_string(p.job) + " not started: " + message);
  } else {
    reply = error_reply("the build's supervisor exited before the job started");
  }
  const uint64_t client = p.client;
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(index));
  auto it = clients_.find(client);
  if (it == clients_.end()) return;  // the client left; the job runs anyway
  it->second.waiting = false;
  send_reply(it->second, reply);
  process_lines(client);  // requests it sent after the build
}

// ---- daemonizing ---------------------------------------------------------------

// The grandchild reports its startup on this pipe: "R" once listening, or
// "E<message>". The first process exits only then, so `rchd run && rch …`
// never finds the socket missing.
void report_startup(int fd, const std::string& message) {
  std::string_view rest = message;
  while (!rest.empty()) {
    ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

int run_foreground(const DaemonOptions& options, const sigset_t& handled) {
  auto daemon = Daemon::start(options, handled);
  if (!daemon) {
    std::fprintf(stderr, "rchd: %s\n", daemon.error().c_str());
    return 1;
  }
  // systemd's Type=notify: ready once the socket accepts connections.
  if (auto r = notify_systemd("READY=1\nSTATUS=listening on " + options.socket.string()); !r) {
    log_line("warning: " + r.error());
  }
  return (*daemon)->serve();
}

int run_daemonized(const DaemonOptions& options, const sigset_t& handled) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "rchd: cannot create a pipe: %s\n", std::strerror(errno));
    return 1;
  }
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  std::fflush(nullptr);
  const pid_t first = ::fork();
  if (first < 0) {
    std::fprintf(stderr, "rchd: cannot fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (first > 0) {
    ready_write.reset();
    std::string message;
    char buf[1024];
    ssize_t n;
    while ((n = ::read(ready_read.get(), buf, sizeof buf)) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      message.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
    if (message.rfind("R", 0) == 0) return 0;
    if (message.rfind("E", 0) == 0) {
      std::fprintf(stderr, "rchd: %s\n", message.c_str() + 1);
    } else {
      std::fprintf(stderr, "rchd: the daemon exited during startup (see %s)\n", options.log.c_str());
    }
    return 1;
  }

  // First child: a new session without a terminal, then fork again so the
  // daemon is not a session leader and can never acquire one.
  ready_read.reset();
  ::setsid();
  const pid_t second = ::fork();
  if (second != 0) ::_exit(second < 0 ? 1 : 0);

  if (::chdir("/") != 0) {
    report_startup(ready_write.get(), "Ecannot chdir to /: " + errno_text());
    ::_exit(1);
  }
  (void)make_dirs(options.log.parent_path(), 0755);  // open() below reports a failure
  UniqueFd log(::open(options.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!log.valid() || !null_fd.valid()) {
    report_startup(ready_write.get(), "Ecannot open log " + options.log.string() + ": " + errno_text());
    ::_exit(1);
  }
  ::dup2(null_fd.get(), STDIN_FILENO);
  ::dup2(log.get(), STDOUT_FILENO);
  ::dup2(log.get(), STDERR_FILENO);
  log.reset();
  null_fd.reset();

  int code = 1;
  {
    auto daemon = Daemon::start(options, handled);
    if (!daemon) {
      log_line("cannot start: " + daemon.error());
      report_startup(ready_write.get(), "E" + daemon.error());
      ::_exit(1);
    }
    report_startup(ready_write.get(), "R");
    ready_write.reset();
    code = (*daemon)->serve();
  }
  return code;
}

}  // namespace

fs::path daemon_agent_root(const fs::path& root) { return root / "daemon"; }

int run_daemon(const DaemonOptions& options) {
  ensure_std_fds();
  const sigset_t handled = handled_signals();
  if (::sigprocmask(SIG_BLOCK, &handled, nullptr) != 0) {
    std::fprintf(stderr, "rchd: cannot block signals: %s\n", std::strerror(errno));
    return 1;
  }
  // Replies go out with MSG_NOSIGNAL; this also covers a log on a closed pipe.
  ::signal(SIGPIPE, SIG_IGN);
  return options.foreground ? run_foreground(options, handled) : run_daemonized(options, handled);
}

}  // namespace rch::rchd
