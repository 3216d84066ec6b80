// The client of rchd's Unix socket: rch update uses it to drain, stop and
// restart the local daemon. The messages are those of daemon_protocol.hpp.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "core/util/result.hpp"

namespace rch {

// Where rchd listens by default: <rch_home>/rchd.sock (rch_home is
// $RCH_HOME, else ~/.rch). `rchd run --socket` can put it elsewhere.
std::filesystem::path daemon_socket_path(const std::filesystem::path& rch_home);

struct DaemonStatus {
  bool running = false;
  int pid = 0;
  std::string version;
  bool draining = false;
  int active_builds = 0;
};

// running=false (not an error) when there is no socket or nobody listens on
// it (a daemon killed with -9 leaves its socket behind).
Result<DaemonStatus> daemon_status(const std::filesystem::path& socket);

// Sets the daemon's drain marker: new builds are refused from now on. Returns
// at once; poll daemon_status until active_builds is 0. Both are errors when
// no daemon runs (check daemon_status first).
Result<void> daemon_drain(const std::filesystem::path& socket);
Result<void> daemon_undrain(const std::filesystem::path& socket);

// Asks the daemon to exit and waits up to `wait` until its process is gone.
// Without force the daemon refuses while builds are active. Success when no
// daemon is running.
Result<void> daemon_shutdown(const std::filesystem::path& socket, bool force, std::chrono::seconds wait);

// Sends one request line (the newline is added) and returns the reply line
// without its newline. The timeout covers connect, send and reply.
Result<std::string> daemon_request(const std::filesystem::path& socket, const std::string& json_line,
                                   std::chrono::milliseconds timeout);

}  // namespace rch
