// The rchd protocol, shared by the daemon (cli/rchd) and its client
// (core/agent/daemon_client, for rch update): one JSON object per line over
// the daemon's Unix socket, one reply line per request. Every request and
// reply is a type here; this file alone reads and writes their JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/util/result.hpp"

namespace rch::daemon_protocol {

// ---- requests: {"cmd":"status"|"drain"|"undrain"|"shutdown"|"build", …}

struct Status {};
struct Drain {
  std::optional<long long> timeout;  // seconds the client will wait (logged only)
};
struct Undrain {};
struct Shutdown {
  bool force = false;  // also while builds run
};
struct Build {
  std::vector<std::string> argv;  // non-empty, argv[0] non-empty
  std::string cwd;                // absolute, or empty: the daemon's root
};
using Request = std::variant<Status, Drain, Undrain, Shutdown, Build>;

// One request line. Refused, with the reason the daemon replies: bad JSON
// (with its offset), duplicate keys, an unknown or missing "cmd", a field of
// the wrong type or out of range.
Result<Request> parse_request(std::string_view line);
std::string encode(const Request& request);

// ---- replies: {"ok":true, …} or {"ok":false,"error":…}

struct StatusReply {
  int pid = 0;
  std::string version;
  bool draining = false;
  int active_builds = 0;
  std::string root;
  std::string agent_root;
  long long disk_free_mb = 0;
  std::optional<std::string> agent_error;  // the agent root is unhealthy
};
// drain and undrain
struct DrainReply {
  bool draining = false;
  int active_builds = 0;
};
struct ShutdownReply {
  int pid = 0;
  int active_builds = 0;
};
struct BuildReply {
  uint64_t job = 0;
};
struct Refusal {
  std::string error;
  std::optional<int> active_builds;  // shutdown refused while builds run
};

std::string encode(const StatusReply& reply);
std::string encode(const DrainReply& reply);
std::string encode(const ShutdownReply& reply);
std::string encode(const BuildReply& reply);
std::string encode(const Refusal& reply);

// A reply line; a refusal is an error "rchd: <its message>", a malformed
// reply an error quoting the line.
Result<StatusReply> parse_status_reply(std::string_view line);
Result<ShutdownReply> parse_shutdown_reply(std::string_view line);
Result<BuildReply> parse_build_reply(std::string_view line);
Result<void> parse_ok_reply(std::string_view line);

}  // namespace rch::daemon_protocol
