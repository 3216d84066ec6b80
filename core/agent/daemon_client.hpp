// The rchd protocol and its client: one flat JSON object per line over the
// daemon's Unix socket, one reply line per request. rch update uses the
// client to drain, stop and restart the local daemon; rchd uses the same
// reader for requests. Plain C++/POSIX (rch_base), so no JSON library: the
// messages are flat objects whose values are scalars or arrays of strings.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

// One value of a flat JSON object.
struct JsonValue {
  enum class Kind { null, boolean, number, string, string_array };
  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<std::string> strings;  // Kind::string_array
};

// A parsed flat object. The typed getters return nullopt when the key is
// absent and an error when it is present with another type, so a request
// with "timeout":"x" is refused instead of silently defaulted.
class FlatJsonObject {
 public:
  const JsonValue* find(std::string_view key) const;
  Result<std::optional<bool>> get_bool(std::string_view key) const;
  Result<std::optional<double>> get_number(std::string_view key) const;
  // A number that is a whole value in [min, max].
  Result<std::optional<long long>> get_integer(std::string_view key, long long min, long long max) const;
  Result<std::optional<std::string>> get_string(std::string_view key) const;
  Result<std::optional<std::vector<std::string>>> get_strings(std::string_view key) const;

  std::map<std::string, JsonValue, std::less<>> fields;
};

// Parses exactly one JSON object (surrounding whitespace allowed). Nested
// objects and arrays of anything but strings are refused, as are duplicate
// keys and invalid escapes; the error says where.
Result<FlatJsonObject> parse_flat_json(std::string_view text);

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
