// rchd stop over the daemon's own socket protocol (core/agent's client):
// drain, poll status until no build runs or the timeout passes, shutdown.
#include "cli/rchd/stop.hpp"

#include <cstdio>
#include <string>
#include <thread>

#include "core/agent/daemon_client.hpp"

namespace rch::rchd {

namespace {

constexpr std::chrono::milliseconds k_poll{200};
constexpr std::chrono::seconds k_exit_wait{15};  // after "shutdown": until the process is gone

std::string builds_text(int n) { return std::to_string(n) + (n == 1 ? " build" : " builds"); }

int fail(const std::string& message) {
  std::fprintf(stderr, "rchd stop: %s\n", message.c_str());
  return 1;
}

}  // namespace

int stop_daemon(const std::filesystem::path& socket, std::chrono::seconds timeout) {
  auto st = daemon_status(socket);
  if (!st) return fail(st.error());
  if (!st->running) {
    std::fprintf(stderr, "rchd stop: no rchd answers on %s; nothing to stop\n", socket.c_str());
    return 0;
  }
  const int pid = st->pid;
  if (auto r = daemon_drain(socket); !r)
    return fail("cannot drain rchd (pid " + std::to_string(pid) + "): " + r.error());
  int active = st->active_builds;
  if (active > 0) {
    std::fprintf(stderr, "rchd stop: draining rchd (pid %d): %s running, waiting up to %llds\n", pid,
                 builds_text(active).c_str(), static_cast<long long>(timeout.count()));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (active > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(k_poll);
    auto now = daemon_status(socket);
    if (!now) return fail("rchd (pid " + std::to_string(pid) + ") while draining: " + now.error());
    if (!now->running) return 0;  // it went away by itself
    active = now->active_builds;
  }
  if (active > 0) {
    std::fprintf(stderr, "rchd stop: %s still running after %llds; stopping rchd (pid %d) anyway\n",
                 builds_text(active).c_str(), static_cast<long long>(timeout.count()), pid);
  }
  if (auto r = daemon_shutdown(socket, active > 0, k_exit_wait); !r) {
    return fail("cannot stop rchd (pid " + std::to_string(pid) + "): " + r.error());
  }
  std::fprintf(stderr, "rchd stop: rchd (pid %d) stopped\n", pid);
  return 0;
}

}  // namespace rch::rchd
