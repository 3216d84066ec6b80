// The client side of the daemon's Unix socket (connect, one request line, one
// reply line, with a deadline over the whole exchange so a wedged daemon
// cannot hang rch update). The messages are daemon_protocol's.
#include "core/agent/daemon_client.hpp"

#include "core/agent/daemon_protocol.hpp"

#include "core/util/unique_fd.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace rch {
namespace fs = std::filesystem;

namespace {

using steady = std::chrono::steady_clock;

// ---- socket client -----------------------------------------------------------

int remaining_ms(steady::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

// Why a request failed: `absent` means no daemon is there at all (no socket
// file, or a socket file nobody listens on), which status reports as "not
// running" rather than as an error.
struct RequestFailure {
  bool absent = false;
};

Result<UniqueFd> connect_daemon(const fs::path& socket, steady::time_point deadline, RequestFailure& why) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error("rchd socket path " + path + " is empty or longer than " +
                      std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (true) {
    // Non-blocking, so a daemon whose backlog is full (it is not accepting)
    // gives EAGAIN and the deadline applies instead of a hang in connect().
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) return make_error(std::string("cannot create a Unix socket: ") + std::strerror(errno));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      why.absent = true;
      return make_error("rchd is not running (nothing listens on " + path + ": " + std::strerror(err) + ")");
    }
    if (err != EAGAIN && err != EINTR) {
      return make_error("cannot connect to rchd at " + path + ": " + std::strerror(err));
    }
    if (steady::now() >= deadline) return make_error("rchd at " + path + " is not accepting connections (timed out)");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<std::string> request(const fs::path& socket, const std::string& json_line, std::chrono::milliseconds timeout,
                            RequestFailure& why) {
  if (json_line.find('\n') != std::string::npos) return make_error("a request must be one line");
  const auto deadline = steady::now() + timeout;
  auto fd = connect_daemon(socket, deadline, why);
  if (!fd) return Error{fd.error()};

  const std::string out = json_line + "\n";
  size_t sent = 0;
  while (sent < out.size()) {
    // MSG_NOSIGNAL: a daemon that hangs up must give an error, not SIGPIPE.
    ssize_t n = ::send(fd->get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return make_error(std::string("cannot send to rchd: ") + std::strerror(errno));
    pollfd p{fd->get(), POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0 && steady::now() >= deadline) {
      return make_error("timed out sending to rchd at " + socket.string());
    }
  }

  constexpr size_t k_max_reply = 1 << 20;
  std::string in;
  char buf[4096];
  while (true) {
    if (const auto nl = in.find('\n'); nl != std::string::npos) return in.substr(0, nl);
    if (in.size() > k_max_reply) return make_error("reply of rchd is longer than 1 MiB");
    ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return make_error("rchd closed the connection without a reply");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return make_error(std::string("cannot read from rchd: ") + std::strerror(errno));
    pollfd p{fd->get(), POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0 && steady::now() >= deadline) {
      return make_error("no reply from rchd at " + socket.string() + " within " + std::to_string(timeout.count()) +
                        " ms");
    }
  }
}

constexpr std::chrono::milliseconds k_request_timeout{5000};

Result<void> simple_command(const fs::path& socket, const daemon_protocol::Request& req) {
  RequestFailure why;
  auto reply = request(socket, daemon_protocol::encode(req), k_request_timeout, why);
  if (!reply) return Error{reply.error()};
  return daemon_protocol::parse_ok_reply(*reply);
}

// True once pid has exited. A zombie counts as gone: the daemon's parent
// (a test, a supervisor) may not have reaped it yet, but it has exited.
bool process_gone(int pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return false;
  const char state = text[paren + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace

fs::path daemon_socket_path(const fs::path& rch_home) { return rch_home / "rchd.sock"; }

Result<std::string> daemon_request(const fs::path& socket, const std::string& json_line,
                                   std::chrono::milliseconds timeout) {
  RequestFailure why;
  return request(socket, json_line, timeout, why);
}

Result<DaemonStatus> daemon_status(const fs::path& socket) {
  RequestFailure why;
  auto reply = request(socket, daemon_protocol::encode(daemon_protocol::Status{}), k_request_timeout, why);
  if (!reply) {
    if (why.absent) return DaemonStatus{};
    return Error{reply.error()};
  }
  auto st = daemon_protocol::parse_status_reply(*reply);
  if (!st) return Error{st.error()};
  return DaemonStatus{true, st->pid, st->version, st->draining, st->active_builds};
}

Result<void> daemon_drain(const fs::path& socket) { return simple_command(socket, daemon_protocol::Drain{}); }

Result<void> daemon_undrain(const fs::path& socket) { return simple_command(socket, daemon_protocol::Undrain{}); }

Result<void> daemon_shutdown(const fs::path& socket, bool force, std::chrono::seconds wait) {
  RequestFailure why;
  auto reply = request(socket, daemon_protocol::encode(daemon_protocol::Shutdown{force}), k_request_timeout, why);
  if (!reply) {
    if (why.absent) return {};  // nothing to stop
    return Error{reply.error()};
  }
  auto accepted = daemon_protocol::parse_shutdown_reply(*reply);
  if (!accepted) return Error{accepted.error()};
  const int daemon_pid = accepted->pid;
  const auto deadline = steady::now() + wait;
  while (!process_gone(daemon_pid)) {
    if (steady::now() >= deadline) {
      return make_error("rchd (pid " + std::to_string(daemon_pid) + ") accepted shutdown but is still running after " +
                        std::to_string(wait.count()) + "s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}

}  // namespace rch
