// rch-wkr: the worker agent rch deploys to every host. Kept tiny and
// self-contained (hand-parsed flags, no third-party libraries) so one static
// binary runs on any x86-64 Linux worker.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "core/agent/agent.hpp"
#include "core/util/json.hpp"
#include "core/version/build_info.hpp"

namespace rch {
namespace {

constexpr int k_exit_ok = 0;
constexpr int k_exit_fail = 1;
constexpr int k_exit_usage = 2;
constexpr int k_exit_drain_timeout = 3;
constexpr int k_exit_refused = 75;        // EX_TEMPFAIL: try another worker or later
constexpr int k_exit_cannot_start = 125;  // like env(1)/timeout(1): our failure, not the job's

constexpr const char* k_help = R"(usage: rch-wkr [--root DIR] COMMAND [ARGS]

The rch worker agent: runs build jobs under leases and drains for updates.

commands:
  health [--json]             version, draining, active builds, disk free;
                              exit 0 when healthy, 1 when not
  drain [--timeout S] [--json]
                              stop accepting jobs and wait until running
                              ones end (default timeout 120 s); exit 0 when
                              drained, 3 on timeout (the worker stays draining)
  undrain                     accept jobs again
  exec [--] CMD [ARGS...]     run CMD as a job under a lease and exit with its
                              status (128+N if killed by signal N); exit 75 if
                              draining, 125 if the job could not be started
  help                        this text

options:
  --root DIR                  agent root (default: $RCH_WKR_ROOT, else <X> when
                              installed as <X>/versions/v<ver>/rch-wkr, else ~/.rch)
  --version                   print "rch-wkr X.Y.Z"
  -h, --help                  this text
)";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "rch-wkr: %s (see rch-wkr --help)\n", message.c_str());
  return k_exit_usage;
}

std::string active_builds_text(int n) { return std::to_string(n) + (n == 1 ? " active build" : " active builds"); }

// The health this binary reports. The test-only failure is fixed at build
// time (CMake option RCH_WKR_FAIL_HEALTH) and cannot be switched at runtime.
AgentHealth worker_health(const Agent& agent) {
  AgentHealth h = agent.health();
#if defined(RCH_WKR_FAIL_HEALTH) && RCH_WKR_FAIL_HEALTH
  h.ok = false;
  h.error = "built with RCH_WKR_FAIL_HEALTH";
#endif
  return h;
}

int cmd_health(Agent& agent, const std::vector<std::string>& args) {
  bool json = false;
  for (const auto& a : args) {
    if (a == "--json") {
      json = true;
    } else {
      return usage_error("health: unknown argument '" + a + "'");
    }
  }
  const AgentHealth h = worker_health(agent);
  if (json) {
    std::printf("%s\n", health_json(h).c_str());
  } else {
    std::printf("version: %s\nroot: %s\ndraining: %s\nactive builds: %d\ndisk free: %llu MB\nok: %s\n",
                h.version.c_str(), h.root.c_str(), h.draining ? "yes" : "no", h.active_builds,
                static_cast<unsigned long long>(h.disk_free_mb), h.ok ? "yes" : "no");
    if (!h.ok) std::printf("error: %s\n", h.error.c_str());
  }
  return h.ok ? k_exit_ok : k_exit_fail;
}

std::optional<long> parse_seconds(const std::string& s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::stol(s);
}

int cmd_drain(Agent& agent, const std::vector<std::string>& args) {
  bool json = false;
  long timeout = 120;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::optional<std::string> value;
    if (a == "--json") {
      json = true;
      continue;
    } else if (a == "--timeout") {
      if (i + 1 >= args.size()) return usage_error("drain: --timeout needs a number of seconds");
      value = args[++i];
    } else if (a.rfind("--timeout=", 0) == 0) {
      value = a.substr(10);
    } else {
      return usage_error("drain: unknown argument '" + a + "'");
    }
    auto seconds = parse_seconds(*value);
    if (!seconds) return usage_error("drain: --timeout wants whole seconds, got '" + *value + "'");
    timeout = *seconds;
  }

  // Setting the marker separately tells "cannot drain" (exit 1) from a
  // drain that ran out of time (exit 3).
  if (auto r = agent.set_draining(); !r) {
    std::fprintf(stderr, "rch-wkr: cannot drain: %s\n", r.error().c_str());
    return k_exit_fail;
  }
  auto r = agent.drain(std::chrono::seconds(timeout),
                       [](int n) { std::fprintf(stderr, "draining: %s\n", active_builds_text(n).c_str()); });
  if (r) {
    if (json) {
      std::printf("%s\n", dump_json({{"drained", true}, {"active_builds", 0}}).c_str());
    } else {
      std::printf("drained: no active builds\n");
    }
    return k_exit_ok;
  }
  std::fprintf(stderr, "rch-wkr: %s\n", r.error().c_str());
  if (json) {
    std::printf(
        "%s\n",
        dump_json({{"drained", false}, {"active_builds", agent.active_leases()}, {"error", r.error()}}).c_str());
  }
  return k_exit_drain_timeout;
}

int cmd_undrain(Agent& agent, const std::vector<std::string>& args) {
  if (!args.empty()) return usage_error("undrain: unknown argument '" + args[0] + "'");
  if (auto r = agent.undrain(); !r) {
    std::fprintf(stderr, "rch-wkr: cannot undrain: %s\n", r.error().c_str());
    return k_exit_fail;
  }
  return k_exit_ok;
}

int cmd_exec(Agent& agent, const std::vector<std::string>& job) {
  if (job.empty()) return usage_error("exec: no command given (rch-wkr exec -- CMD [ARGS...])");
  auto r = agent.run_job(job);
  if (r) return *r;
  std::fprintf(stderr, "rch-wkr: %s\n", r.error().c_str());
  return r.error() == k_job_refused_draining ? k_exit_refused : k_exit_cannot_start;
}

int run(int argc, char** argv) {
  std::string root_flag;
  std::optional<std::string> command;
  std::vector<std::string> args;  // the command's own arguments (exec: the job)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (command == "exec") {
      // Everything from "--" or the first non-flag on is the job's argv.
      if (a == "--") {
        args.assign(argv + i + 1, argv + argc);
        break;
      }
      if (a.empty() || a[0] != '-') {
        args.assign(argv + i, argv + argc);
        break;
      }
    }
    if (a == "--root") {
      if (i + 1 >= argc || argv[i + 1][0] == '\0') return usage_error("--root needs a directory");
      root_flag = argv[++i];
    } else if (a.rfind("--root=", 0) == 0) {
      root_flag = a.substr(7);
      if (root_flag.empty()) return usage_error("--root needs a directory");
    } else if (command) {
      if (*command == "exec") return usage_error("exec: unknown flag '" + a + "' (put the job after --)");
      args.push_back(a);
    } else if (a == "--version") {
      std::printf("rch-wkr %s\n", build_version());
      return k_exit_ok;
    } else if (a == "--help" || a == "-h") {
      std::fputs(k_help, stdout);
      return k_exit_ok;
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown flag '" + a + "'");
    } else {
      command = a;
    }
  }
  if (!command) {
    std::fputs(k_help, stderr);
    return k_exit_usage;
  }
  if (*command == "help") {
    if (!args.empty()) return usage_error("help: unknown argument '" + args[0] + "'");
    std::fputs(k_help, stdout);
    return k_exit_ok;
  }

  Agent agent(discover_agent_root(root_flag));
  if (*command == "health") return cmd_health(agent, args);
  if (*command == "drain") return cmd_drain(agent, args);
  if (*command == "undrain") return cmd_undrain(agent, args);
  if (*command == "exec") return cmd_exec(agent, args);
  return usage_error("unknown command '" + *command + "'");
}

}  // namespace
}  // namespace rch

int main(int argc, char** argv) { return rch::run(argc, argv); }
