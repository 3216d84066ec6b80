// rchd: the local daemon that runs builds under leases and that `rch update`
// drains and restarts. Flags are parsed by hand, like rch-wkr's: rchd links
// only rch_base. The daemon itself is in daemon.cpp, builds in job.cpp.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "cli/rchd/daemon.hpp"
#include "cli/rchd/job.hpp"
#include "cli/rchd/stop.hpp"
#include "core/agent/daemon_client.hpp"
#include "core/util/user.hpp"
#include "core/version/build_info.hpp"

namespace rch::rchd {
namespace {

namespace fs = std::filesystem;

constexpr int k_exit_usage = 2;

constexpr const char* k_help =
    R"(usage: rchd run [--root DIR] [--socket PATH] [--pidfile PATH] [--log PATH] [--foreground]
       rchd stop [--root DIR] [--socket PATH] [--timeout S]
       rchd --version | --help

The rch local daemon: runs builds under leases (the worker agent's lease
registry, rooted at <root>/daemon) and answers on a Unix socket so that
`rch update` can drain it, stop it and start the new version.

run options:
  --root DIR        default $RCH_HOME, else ~/.rch
  --socket PATH     default <root>/rchd.sock (mode 0600)
  --pidfile PATH    default <root>/rchd.pid (locked while the daemon runs;
                    a second daemon on it is refused)
  --log PATH        daemon log when not in the foreground (default <root>/rchd.log)
  --foreground      stay attached and log to stderr; otherwise rchd detaches
                    and `rchd run` returns once the socket accepts connections;
                    in the foreground under systemd (Type=notify), rchd sends
                    READY=1 to $NOTIFY_SOCKET once the socket accepts them

stop options (drain, wait for running builds, then shut down; systemd's ExecStop):
  --root DIR        as for run; the daemon is found at <root>/rchd.sock
  --socket PATH     the daemon's socket, if not there
  --timeout S       wait up to S seconds for running builds (default 300); then
                    stop anyway, the builds keeping their leases

protocol: one JSON object per line, one reply line per request:
  {"cmd":"status"}                     pid, version, draining, active_builds, root
  {"cmd":"drain","timeout":S}          refuse new builds; replies at once
                                       (poll status until active_builds is 0)
  {"cmd":"undrain"}                    accept builds again
  {"cmd":"shutdown","force":false}     exit; refused while builds are active
                                       unless force (builds then keep running)
  {"cmd":"build","argv":[...],"cwd":D} run a job under a lease: {"ok":true,"job":N}
                                       once it runs, {"ok":false,"error":"draining"}
A build's output goes to the daemon's log (stderr with --foreground).
SIGTERM, SIGINT and SIGHUP make the daemon exit cleanly (socket and pidfile
removed; running builds keep their leases until they end).
)";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "rchd: %s (see rchd --help)\n", message.c_str());
  return k_exit_usage;
}

// $RCH_HOME, else ~/.rch (as rch reads RCH_HOME).
fs::path default_root() {
  if (const char* env = std::getenv("RCH_HOME"); env != nullptr && *env != '\0') {
    return fs::absolute(expand_user(env)).lexically_normal();
  }
  return (home_dir() / ".rch").lexically_normal();
}

int cmd_run(int argc, char** argv) {
  std::optional<fs::path> root, socket, pidfile, log;
  bool foreground = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    std::optional<fs::path>* target = nullptr;
    std::string name;
    for (auto [flag, slot] : {std::pair{"--root", &root}, std::pair{"--socket", &socket},
                              std::pair{"--pidfile", &pidfile}, std::pair{"--log", &log}}) {
      const std::string f = flag;
      if (a == f || a.rfind(f + "=", 0) == 0) {
        target = slot;
        name = f;
      }
    }
    if (target != nullptr) {
      std::string value;
      if (a == name) {
        if (i + 1 >= argc) return usage_error(name + " needs a path");
        value = argv[++i];
      } else {
        value = a.substr(name.size() + 1);
      }
      if (value.empty()) return usage_error(name + " needs a path");
      // Absolute now: the daemon changes to / when it detaches.
      *target = fs::absolute(value);
    } else if (a == "--foreground") {
      foreground = true;
    } else {
      return usage_error("run: unknown argument '" + a + "'");
    }
  }

  DaemonOptions options;
  options.root = root ? root->lexically_normal() : default_root();
  options.socket = socket ? *socket : daemon_socket_path(options.root);
  options.pidfile = pidfile ? *pidfile : options.root / "rchd.pid";
  options.log = log ? *log : options.root / "rchd.log";
  options.foreground = foreground;
  return run_daemon(options);
}

int cmd_stop(int argc, char** argv) {
  std::optional<fs::path> root, socket;
  long long timeout = 300;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i], value;
    const auto eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
    } else if (a == "--root" || a == "--socket" || a == "--timeout") {
      if (i + 1 >= argc) return usage_error("stop: " + a + " needs a value");
      value = argv[++i];
    } else {
      return usage_error("stop: unknown argument '" + a + "'");
    }
    if (value.empty()) return usage_error("stop: " + a + " needs a value");
    if (a == "--root") {
      root = fs::absolute(value);
    } else if (a == "--socket") {
      socket = fs::absolute(value);
    } else if (a == "--timeout") {
      char* end = nullptr;
      timeout = std::strtoll(value.c_str(), &end, 10);
      if (*end != '\0' || timeout < 0) return usage_error("stop: --timeout needs a whole number of seconds");
    } else {
      return usage_error("stop: unknown argument '" + a + "'");
    }
  }
  const fs::path sock = socket ? *socket : daemon_socket_path(root ? root->lexically_normal() : default_root());
  return stop_daemon(sock, std::chrono::seconds(timeout));
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(k_help, stderr);
    return k_exit_usage;
  }
  const std::string command = argv[1];
  if (command == "--version") {
    if (argc > 2) return usage_error("--version takes no arguments");
    std::printf("rchd %s\n", build_version());
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(k_help, stdout);
    return 0;
  }
  if (command == "run") return cmd_run(argc, argv);
  if (command == "stop") return cmd_stop(argc, argv);
  if (command == k_job_shim_command) return job_shim_main(argc, argv);
  return usage_error("unknown command '" + command + "'");
}

}  // namespace
}  // namespace rch::rchd

int main(int argc, char** argv) { return rch::rchd::run(argc, argv); }
