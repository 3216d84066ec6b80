// The rchd daemon: pidfile, Unix socket, the request loop, and daemonizing.
// Local build leases live in an Agent rooted at <root>/daemon (so
// <root>/daemon/state/leases and <root>/daemon/state/drain), not at <root>
// itself: ~/.rch is also rch-wkr's default root, and on a host that is both
// a workstation and a worker, draining rchd for an update must not drain the
// worker agent (nor count its jobs) and vice versa.
#pragma once

#include <filesystem>

namespace rch::rchd {

struct DaemonOptions {
  std::filesystem::path root;     // $RCH_HOME or ~/.rch
  std::filesystem::path socket;   // <root>/rchd.sock
  std::filesystem::path pidfile;  // <root>/rchd.pid
  std::filesystem::path log;      // <root>/rchd.log (daemonized only)
  bool foreground = false;
};

// The directory of the daemon's Agent (leases and drain marker).
std::filesystem::path daemon_agent_root(const std::filesystem::path& root);

// Runs the daemon until a shutdown request or SIGTERM/SIGINT/SIGHUP and
// returns the exit code. Without foreground the calling process returns 0 only
// once the daemonized process listens on the socket, 1 with the reason on
// stderr if it failed to start.
int run_daemon(const DaemonOptions& options);

}  // namespace rch::rchd
